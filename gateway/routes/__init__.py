"""The gateway's HTTP routes, one `APIRouter` per job; `gateway.app.create_app` includes them."""
