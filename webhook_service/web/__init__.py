"""The web layer: the app factory (`app.create_app`), its blueprints, the callback endpoint in front of
Flask, the dashboard and the OpenAPI document. It calls the domain; the domain never calls it."""
