import threading


class Thermometer:
    def __init__(self) -> None:
        self.readings = {"kitchen": 21.5, "garage": -3.0}
        self.recorded = 0
        self.lock = threading.Lock()

    def perform(self, room: str, celsius: float) -> dict[str, float]:
        """
        Record a temperature reading.
        :param room: Room name, used as the `room` label of sample_temperature_celsius.
        :param celsius: The temperature.
        """
        with self.lock:
            self.readings[room] = celsius
            self.recorded += 1
            return dict(self.readings)

    def docs_input_example(self) -> dict:
        return {"room": "attic", "celsius": 18.25}

    def metrics(self) -> list[dict]:
        with self.lock:
            readings = dict(self.readings)
            recorded = self.recorded
        return [
            {
                "name": "sample_readings_recorded",
                "value": recorded,
                "description": "Readings recorded through perform since the job started",
            },
            *(
                {
                    "name": "sample_temperature_celsius",
                    "value": celsius,
                    "description": "Last temperature reading per room",
                    "labels": {"room": room},
                }
                for room, celsius in sorted(readings.items())
            ),
            {"name": "sample_sensor_errors", "value": 0, "description": "Sensor errors seen"},
            {"name": "sample_humidity_percent", "value": None, "description": "No humidity sensor yet"},
        ]
