# pragma version ~=0.4.3
"""
@title A smart-contract wallet for tests: receiving the native coin costs more than the
       2,300 gas that Vyper's send() / Solidity's transfer() forward, as real multisig and
       account-abstraction wallets do (they log and count what arrives).
"""

received: public(uint256)
payments: public(uint256)


@external
@payable
def __default__():
    self.received += msg.value
    self.payments += 1
