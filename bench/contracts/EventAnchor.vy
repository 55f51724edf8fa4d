# pragma version ~=0.4.3
"""
@title The fair naive baseline: anchor one session per transaction with an event only
       (no storage), as a system without batching would.
"""

event Anchored:
    record_hash: indexed(bytes32)
    amount: uint256


@external
def anchor(record_hash: bytes32, amount: uint256):
    log Anchored(record_hash=record_hash, amount=amount)
