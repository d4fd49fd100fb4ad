"""Headless quickstart: train the news classifier, publish it, query it over HTTP, print the answers."""

import sys
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).parent))

import easytensor  # noqa: E402
from easytensor._session import client  # noqa: E402
from train import train  # noqa: E402

HEADLINES = [
    "Liverpool beat Manchester United 4-2 on May 13th",
    "Central bank holds interest rates as inflation cools",
]


def main() -> None:
    model = train()
    model_file = Path(__file__).parent / "model.py"
    model_id, token = easytensor.pytorch.upload_model(
        "News classifier", model, model_file, sample=HEADLINES[0]
    )
    endpoint = client().endpoint(model_id)
    print(f"Published {model_id} at {endpoint}")
    for headline in HEADLINES:
        reply = requests.post(
            endpoint,
            json={"instances": [headline]},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        reply.raise_for_status()
        served = reply.json()["predictions"][0]
        print(f"  {headline!r} -> served: {served!r}, live: {model.predict_single(headline)!r}")
    print(
        f"\nQuery it yourself:\n  curl -s {endpoint} -H 'Authorization: Bearer {token}' \\\n"
        "       -H 'Content-Type: text/plain' --data-binary 'Stocks rally on strong earnings'"
    )


if __name__ == "__main__":
    main()
