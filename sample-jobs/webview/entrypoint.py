from pathlib import Path

from flask import Flask, jsonify, render_template, request
from flask.typing import ResponseReturnValue


class Greeter:
    def perform(self, name: str) -> str:
        """
        Greet someone.
        :param name: Who to greet.
        """
        name = name.strip()
        if not name:
            raise ValueError("name must not be empty")
        return f"Hello, {name}!"

    def docs_input_example(self) -> dict:
        return {"name": "Ada"}

    def webview_app(self, base_url: str) -> Flask:
        app = Flask(__name__, root_path=str(Path(__file__).parent), static_folder=None)

        @app.get(base_url + "/")
        def index() -> ResponseReturnValue:
            return render_template("index.html", base_url=base_url, name="", greeting=None)

        @app.post(base_url + "/greet")
        def greet() -> ResponseReturnValue:
            data = request.get_json(silent=True) if request.is_json else request.form
            name = str((data or {}).get("name", ""))
            try:
                greeting = self.perform(name)
            except ValueError as e:
                if request.is_json:
                    return jsonify(error=str(e)), 400
                return render_template("index.html", base_url=base_url, name=name, greeting=str(e)), 400
            if request.is_json:
                return jsonify(greeting=greeting)
            return render_template("index.html", base_url=base_url, name=name, greeting=greeting)

        return app
