# pragma version ~=0.4.3
"""
@title voltledger settlement
@notice Anchors Merkle roots of charging-session batches and pays station
        owners from drivers' escrows against Merkle proofs, never above the
        price cap each driver accepted.
@dev Leaf   = keccak256(0x00 ++ abi_encode(record_hash, tag_hash, energy_wh, amount, payee))
     Node   = keccak256(0x01 ++ min(a, b) ++ max(a, b))
     (the same encoding as settlement/merkle.py and settlement/records.py)
"""

event Anchored:
    root: indexed(bytes32)
    batch_id: indexed(uint256)
    count: uint256

event Deposited:
    tag_hash: indexed(bytes32)
    owner: address
    amount: uint256
    max_price_per_kwh: uint256

event Claimed:
    root: indexed(bytes32)
    leaf: indexed(bytes32)
    payee: address
    amount: uint256

event WithdrawalRequested:
    tag_hash: indexed(bytes32)
    available_at: uint256

event Withdrawn:
    tag_hash: indexed(bytes32)
    amount: uint256

struct Escrow:
    owner: address
    balance: uint256
    max_price_per_kwh: uint256
    withdraw_after: uint256

struct Claim:
    root: bytes32
    record_hash: bytes32
    tag_hash: bytes32
    energy_wh: uint256
    amount: uint256
    payee: address
    proof: DynArray[bytes32, 32]

operator: public(address)
notice_period: public(uint256)
anchored_block: public(HashMap[bytes32, uint256])
batch_root: public(HashMap[uint256, bytes32])
escrows: public(HashMap[bytes32, Escrow])
# done flags packed 256 to a storage slot: leaf -> bit in slot keccak(leaf) >> 8
claimed_bits: HashMap[uint256, uint256]


@deploy
def __init__(notice_period: uint256):
    self.operator = msg.sender
    self.notice_period = notice_period


@external
def anchor(root: bytes32, count: uint256, batch_id: uint256):
    assert msg.sender == self.operator, "only the operator anchors"
    assert root != empty(bytes32), "empty root"
    assert self.anchored_block[root] == 0, "root already anchored"
    assert self.batch_root[batch_id] == empty(bytes32), "batch already anchored"
    self.anchored_block[root] = block.number
    self.batch_root[batch_id] = root
    log Anchored(root=root, batch_id=batch_id, count=count)


@external
@payable
def deposit(tag_hash: bytes32, max_price_per_kwh: uint256):
    escrow: Escrow = self.escrows[tag_hash]
    assert escrow.owner == empty(address) or escrow.owner == msg.sender, "not the owner"
    escrow.owner = msg.sender
    escrow.balance += msg.value
    escrow.max_price_per_kwh = max_price_per_kwh
    escrow.withdraw_after = 0
    self.escrows[tag_hash] = escrow
    log Deposited(tag_hash=tag_hash, owner=msg.sender, amount=msg.value,
                  max_price_per_kwh=max_price_per_kwh)


@external
def request_withdrawal(tag_hash: bytes32):
    assert self.escrows[tag_hash].owner == msg.sender, "not the owner"
    available: uint256 = block.timestamp + self.notice_period
    self.escrows[tag_hash].withdraw_after = available
    log WithdrawalRequested(tag_hash=tag_hash, available_at=available)


@external
def withdraw(tag_hash: bytes32):
    escrow: Escrow = self.escrows[tag_hash]
    assert escrow.owner == msg.sender, "not the owner"
    assert escrow.withdraw_after != 0, "request a withdrawal first"
    assert block.timestamp >= escrow.withdraw_after, "notice period not over"
    amount: uint256 = escrow.balance
    self.escrows[tag_hash].balance = 0
    self.escrows[tag_hash].withdraw_after = 0
    send(msg.sender, amount)
    log Withdrawn(tag_hash=tag_hash, amount=amount)


@internal
@pure
def _leaf(record_hash: bytes32, tag_hash: bytes32, energy_wh: uint256, amount: uint256,
          payee: address) -> bytes32:
    return keccak256(concat(b"\x00", abi_encode(record_hash, tag_hash, energy_wh, amount, payee)))


@internal
@pure
def _root_of(leaf: bytes32, proof: DynArray[bytes32, 32]) -> bytes32:
    node: bytes32 = leaf
    for sibling: bytes32 in proof:
        if convert(node, uint256) <= convert(sibling, uint256):
            node = keccak256(concat(b"\x01", node, sibling))
        else:
            node = keccak256(concat(b"\x01", sibling, node))
    return node


@external
@view
def is_claimed(leaf: bytes32) -> bool:
    key: uint256 = convert(leaf, uint256)
    return (self.claimed_bits[key >> 8] >> (key & 255)) & 1 == 1


@internal
def _claim(c: Claim):
    assert self.anchored_block[c.root] != 0, "root not anchored"
    leaf: bytes32 = self._leaf(c.record_hash, c.tag_hash, c.energy_wh, c.amount, c.payee)
    assert self._root_of(leaf, c.proof) == c.root, "invalid proof"
    key: uint256 = convert(leaf, uint256)
    word: uint256 = self.claimed_bits[key >> 8]
    bit: uint256 = 1 << (key & 255)
    assert word & bit == 0, "already claimed"
    self.claimed_bits[key >> 8] = word | bit
    escrow: Escrow = self.escrows[c.tag_hash]
    # The chain refuses overcharging: amount <= energy (kWh) x the driver's cap.
    assert c.amount * 1000 <= c.energy_wh * escrow.max_price_per_kwh, "above the driver's cap"
    assert escrow.balance >= c.amount, "escrow too low"
    self.escrows[c.tag_hash].balance = escrow.balance - c.amount
    send(c.payee, c.amount)
    log Claimed(root=c.root, leaf=leaf, payee=c.payee, amount=c.amount)


@external
def claim(c: Claim):
    self._claim(c)


@external
def claim_batch(claims: DynArray[Claim, 64]):
    for c: Claim in claims:
        self._claim(c)
