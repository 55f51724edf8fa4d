"""What a link to the receipt page may fill in: the confirmations asked for (the page's
verifier under Node)."""

from __future__ import annotations

import json
from typing import Any

from unit.settlement.test_receipt_page_exponents import run_page_verifier

_NODE = """
import { readFileSync } from "node:fs";
const verifier = await import(process.argv[2]);
const out = [];
for (const [asked, fromLink, chainId] of JSON.parse(readFileSync(0, "utf-8"))) {
  out.push(verifier.confirmationsAsked(asked, fromLink, chainId));
}
console.log(JSON.stringify(out));
"""


def asked(cases: list[list[Any]]) -> list[str | None]:
    return list(json.loads(run_page_verifier(_NODE, cases).stdout))


def test_a_link_asks_for_no_fewer_confirmations_than_the_chains_default() -> None:
    """An operator's link with ?confirmations=1 to a receipt settled on a chain whose
    default is 64 (Ethereum's two epochs) made a block a reorganisation may still drop
    VALID; a link may ask for more, the driver typing a number asks for it."""
    assert asked([
        ["1", True, 1], ["63", True, 137], ["64", True, 1], ["100", True, 1],
        ["1", False, 1],  # typed by the driver: the driver's word
        ["1", True, 31337], ["3", True, 31337],  # a local test chain: 1 is its default
        [None, True, 1], ["5", True, "not a chain"],
    ]) == [None, None, "64", "100", "1", "1", "3", None, None]
