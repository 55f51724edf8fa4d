# pragma version ~=0.4.3
"""
@title voltledger settlement
@notice Anchors Merkle roots of charging-session batches and pays station
        owners from drivers' escrows against Merkle proofs, never above the
        price cap each driver accepted.
@dev Leaf   = keccak256(0x00 ++ abi_encode(record_hash, tag_hash, energy_wh, amount, payee))
     Node   = keccak256(0x01 ++ min(a, b) ++ max(a, b))
     (the same encoding as settlement/merkle.py and settlement/records.py)
     Netted payment: a batch paid netted is anchored as
         key = keccak256(0x02 ++ root ++ head)
     where head is the head of a hash chain over its payout lines (one per driver and
     payee: the sums of the driver's sessions) cut into chunks,
     H_k = keccak256(abi_encode(lines_k, H_k+1)), the last chunk linking to zero.
     Anyone may submit the chunks, in order, each once; a line whose driver's escrow
     or price cap does not cover it is marked unpaid, and only then may that driver's
     sessions of the batch be claimed one by one. A batch without netting is anchored
     as its root itself (head = 0).
"""

from ethereum.ercs import IERC20

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

event ChunkPaid:
    root: indexed(bytes32)
    lines: uint256
    unpaid: uint256
    total: uint256

event Unpaid:
    root: indexed(bytes32)
    tag_hash: indexed(bytes32)
    amount: uint256

event EarningsWithdrawn:
    payee: indexed(address)
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
    payout_head: bytes32  # zero unless the batch was anchored for netted payment

struct Payout:
    tag_hash: bytes32
    payee: address
    energy_wh: uint256
    amount: uint256

MAX_LINES: constant(uint256) = 256
PAID: constant(bytes32) = 0x0000000000000000000000000000000000000000000000000000000000000001

operator: public(address)
notice_period: public(uint256)
# the escrow currency: an ERC-20 token (a stablecoin), or the chain's native coin when empty
token: public(address)
anchored_block: public(HashMap[bytes32, uint256])
batch_root: public(HashMap[uint256, bytes32])
escrows: public(HashMap[bytes32, Escrow])
# done flags of single claims, one bit per leaf (slot = leaf >> 8, bit = leaf & 255)
claimed_bits: HashMap[uint256, uint256]
# netted payment: anchored key -> the hash the next chunk must match (PAID when done)
payout_pending: public(HashMap[bytes32, bytes32])
# keccak256(key ++ tag_hash) -> the driver's line was not covered: single claims allowed
unpaid: public(HashMap[bytes32, bool])
earnings: public(HashMap[address, uint256])


@deploy
def __init__(notice_period: uint256, token: address):
    self.operator = msg.sender
    self.notice_period = notice_period
    self.token = token


@internal
def _transfer(to: address, amount: uint256):
    if self.token == empty(address):
        send(to, amount)
    else:
        assert extcall IERC20(self.token).transfer(to, amount, default_return_value=True), \
            "token transfer failed"


@external
def anchor(root: bytes32, count: uint256, batch_id: uint256):
    assert msg.sender == self.operator, "only the operator anchors"
    assert root != empty(bytes32), "empty root"
    assert self.anchored_block[root] == 0, "root already anchored"
    assert self.batch_root[batch_id] == empty(bytes32), "batch already anchored"
    self.anchored_block[root] = block.number
    self.batch_root[batch_id] = root
    log Anchored(root=root, batch_id=batch_id, count=count)


@internal
@pure
def _key(root: bytes32, payout_head: bytes32) -> bytes32:
    if payout_head == empty(bytes32):
        return root
    return keccak256(concat(b"\x02", root, payout_head))


@external
def pay(root: bytes32, payout_head: bytes32, lines: DynArray[Payout, MAX_LINES],
        next_hash: bytes32):
    """Pay one chunk of a batch's netted lines (in order, each chunk once)."""
    assert payout_head != empty(bytes32), "no payout head"
    key: bytes32 = self._key(root, payout_head)
    assert self.anchored_block[key] != 0, "batch not anchored for netted payment"
    expected: bytes32 = self.payout_pending[key]
    if expected == empty(bytes32):
        expected = payout_head
    assert expected != PAID, "nothing to pay for this batch"
    assert keccak256(abi_encode(lines, next_hash)) == expected, "not the next chunk"
    self.payout_pending[key] = next_hash if next_hash != empty(bytes32) else PAID
    total: uint256 = 0
    unpaid: uint256 = 0
    for line: Payout in lines:
        # two fields, not the whole struct: each storage slot read cold costs 2,100 gas
        balance: uint256 = self.escrows[line.tag_hash].balance
        cap: uint256 = self.escrows[line.tag_hash].max_price_per_kwh
        if line.amount * 1000 <= line.energy_wh * cap and balance >= line.amount:
            self.escrows[line.tag_hash].balance = balance - line.amount
            self.earnings[line.payee] += line.amount
            total += line.amount
        else:
            self.unpaid[keccak256(concat(key, line.tag_hash))] = True
            unpaid += 1
            log Unpaid(root=key, tag_hash=line.tag_hash, amount=line.amount)
    log ChunkPaid(root=key, lines=len(lines), unpaid=unpaid, total=total)


@external
def withdraw_earnings():
    amount: uint256 = self.earnings[msg.sender]
    assert amount > 0, "nothing earned"
    self.earnings[msg.sender] = 0
    self._transfer(msg.sender, amount)
    log EarningsWithdrawn(payee=msg.sender, amount=amount)


@internal
def _deposit(tag_hash: bytes32, max_price_per_kwh: uint256, amount: uint256):
    escrow: Escrow = self.escrows[tag_hash]
    assert escrow.owner == empty(address) or escrow.owner == msg.sender, "not the owner"
    escrow.owner = msg.sender
    escrow.balance += amount
    escrow.max_price_per_kwh = max_price_per_kwh
    escrow.withdraw_after = 0
    self.escrows[tag_hash] = escrow
    log Deposited(tag_hash=tag_hash, owner=msg.sender, amount=amount,
                  max_price_per_kwh=max_price_per_kwh)


@external
@payable
def deposit(tag_hash: bytes32, max_price_per_kwh: uint256):
    """Deposit the native coin (a contract deployed without a token)."""
    assert self.token == empty(address), "this escrow takes the token: deposit_token"
    self._deposit(tag_hash, max_price_per_kwh, msg.value)


@external
def deposit_token(tag_hash: bytes32, max_price_per_kwh: uint256, amount: uint256):
    """Deposit ERC-20 tokens (approve this contract for ``amount`` first)."""
    assert self.token != empty(address), "this escrow takes the native coin: deposit"
    assert extcall IERC20(self.token).transferFrom(msg.sender, self, amount,
                                                  default_return_value=True), \
        "token transfer failed"
    self._deposit(tag_hash, max_price_per_kwh, amount)


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
    self._transfer(msg.sender, amount)
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
    key: bytes32 = self._key(c.root, c.payout_head)
    assert self.anchored_block[key] != 0, "root not anchored"
    if c.payout_head != empty(bytes32):
        # a netted batch: single claims only for a driver whose line was not covered
        assert self.payout_pending[key] == PAID, "netted payment in progress"
        assert self.unpaid[keccak256(concat(key, c.tag_hash))], "paid in the netted batch"
    leaf: bytes32 = self._leaf(c.record_hash, c.tag_hash, c.energy_wh, c.amount, c.payee)
    assert self._root_of(leaf, c.proof) == c.root, "invalid proof"
    slot: uint256 = convert(leaf, uint256)
    word: uint256 = self.claimed_bits[slot >> 8]
    bit: uint256 = 1 << (slot & 255)
    assert word & bit == 0, "already claimed"
    self.claimed_bits[slot >> 8] = word | bit
    escrow: Escrow = self.escrows[c.tag_hash]
    # The chain refuses overcharging: amount <= energy (kWh) x the driver's cap.
    assert c.amount * 1000 <= c.energy_wh * escrow.max_price_per_kwh, "above the driver's cap"
    assert escrow.balance >= c.amount, "escrow too low"
    self.escrows[c.tag_hash].balance = escrow.balance - c.amount
    self._transfer(c.payee, c.amount)
    log Claimed(root=key, leaf=leaf, payee=c.payee, amount=c.amount)


@external
def claim(c: Claim):
    self._claim(c)


@external
def claim_batch(claims: DynArray[Claim, 64]):
    for c: Claim in claims:
        self._claim(c)
