import os

RUNTIME_VARIABLES = ("GREETING", "FEATURE_FLAGS")
SECRET_VARIABLES = ("API_KEY", "DATABASE_PASSWORD")


class EnvironmentReport:
    def perform(self) -> dict[str, dict]:
        """Which configured variables the job sees: plain values as is, secrets only as set/length."""
        secrets = {}
        for name in SECRET_VARIABLES:
            value = os.environ.get(name)
            secrets[name] = {"set": bool(value), "length": len(value or "")}
        return {
            "runtime_env": {name: os.environ.get(name) for name in RUNTIME_VARIABLES},
            "secrets": secrets,
        }

    def docs_input_example(self) -> dict:
        return {}
