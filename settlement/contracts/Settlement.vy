# pragma version ~=0.4.3
"""
@title voltledger settlement v2
@notice Drivers own escrows and state the terms they accept; hosts register their stations
        and get paid; the operator settles charging sessions in chunks. The contract checks
        every session against the driver's terms (or the driver's signed authorization) and
        the station's power, sums the payments itself, stores the chunk's Merkle root and
        never pays a session twice.
@dev Theory of operation.
     A chunk is settled by one `settle` transaction carrying compact entries, each:
         record_hash (bytes32): keccak256 of the session's full canonical record
         packed (uint256): station, low 24 bits | driver (32) | energy Wh (32) |
                           duration s (32) | amount (48, billing units) | kind (8) |
                           slot (8: the station's slot among the chunk's stations) |
                           station >> 24 (every bit above: 16 for an index below 2^40)
     A station's index is 40 bits, so that registering every one is out of anyone's reach
     (>= 24,000 gas each: ~2.6x10^16; 2^24 was ~4x10^11, within a stranger's means on a
     cheap chain, and shut every new host out). The low 24 bits stay where the first
     layout had the whole index: an entry of a station below 2^24 is the same word as
     ever. Every bit above the slot is read as the station's: an entry with a bit set
     above the 40 bits names an index nobody can register (UNKNOWN_STATION), never a
     station read another way.
     kind 0: a card session, paid under the driver's standing terms; kind 1: an app
     session, paid under the driver's EIP-712 SessionAuthorization, which follows in
     `auths` (in the order of the signed entries).
     The chunk is committed by a hash chain over its entries, stored per (ledger, first seq):
         H_0 = keccak256(abi_encode(ledger, first_seq))
         H_i = keccak256(H_i-1 ++ record_hash_i ++ packed_i)
     A receipt names the settle transaction; a verifier reads the entries from its input
     (public chain data), finds the session's entry, recomputes the chain and compares it
     with the stored digest: what was checked and paid is exactly what it reads.
     Sequence numbers are per ledger (one per database) and contiguous: a chunk must start
     at the ledger's next number, so no session is settled twice - not by a second anchor,
     not by a restored backup of the database.
     An entry that fails a check is not paid (event Unpaid with a reason) but stays in the
     chunk; nothing a driver controls can make the transaction revert: every value is a
     bounded integer, every product fits in 256 bits.
     Lowering terms and withdrawing take effect after `notice_period` (longer than the
     operator's settlement delay), so sessions already charged are paid; raising terms is
     immediate. Payments are pulled (`withdraw_earnings`, `withdraw`) with a full call.
     Nothing on chain names a tag, a station id or a session's time: drivers and stations
     are indexes, a card is linked by a salted commitment the driver chose.
     Gas: a driver's state is one storage slot; entries sorted by driver are checked
     against it in memory and it is written once per run; host credits are summed per
     station slot and written once per station.
"""

from ethereum.ercs import IERC20

# -- events ------------------------------------------------------------------------------
event DriverRegistered:
    driver: indexed(address)
    index: uint256

event Deposited:
    driver: indexed(address)
    amount: uint256

event TermsSet:
    driver: indexed(address)
    terms: uint256
    effective_at: uint256

event CardLinked:
    driver: indexed(address)
    commitment: bytes32
    linked: bool

event WithdrawalRequested:
    driver: indexed(address)
    amount: uint256
    available_at: uint256

event Withdrawn:
    driver: indexed(address)
    to: address
    amount: uint256

event StationRegistered:
    station: indexed(uint256)
    host: indexed(address)
    max_power_w: uint256

event LedgerRegistered:
    ledger: indexed(uint256)

event Settled:
    ledger: indexed(uint256)
    first_seq: indexed(uint256)
    count: uint256
    root: bytes32  # the chunk's digest (the hash chain over its entries)
    paid: uint256
    unpaid: uint256

event Unpaid:
    ledger: indexed(uint256)
    seq: indexed(uint256)
    reason: uint256

event EarningsWithdrawn:
    account: indexed(address)
    to: address
    amount: uint256

struct Entry:
    record_hash: bytes32
    packed: uint256

struct Auth:
    packed: uint256  # max/kWh 24 | max/min 24 | max fee 24 | max amount 32 | nonce 48 | expiry 40
    r: bytes32
    vs: bytes32  # EIP-2098: s with the parity of v in the top bit

# -- limits ------------------------------------------------------------------------------
MAX_ENTRIES: constant(uint256) = 1024
MAX_AUTHS: constant(uint256) = 256  # signed entries in one chunk (memory is paid per word)
MAX_STATIONS: constant(uint256) = 256  # distinct stations in one chunk (slots)
MAX_FEE_BPS: constant(uint256) = 2000  # the platform never takes more than 20%
POWER_SLACK_S: constant(uint256) = 60  # clocks and sampling: a minute at full power, and 1%

M8: constant(uint256) = 2**8 - 1
M16: constant(uint256) = 2**16 - 1
M24: constant(uint256) = 2**24 - 1
M32: constant(uint256) = 2**32 - 1
M40: constant(uint256) = 2**40 - 1
M48: constant(uint256) = 2**48 - 1
M64: constant(uint256) = 2**64 - 1
M160: constant(uint256) = 2**160 - 1

# A driver's state, one slot: balance in billing units (64) | day (16) | spent that day
# (32) | terms: max per kWh (24) | max per minute (24) | max session fee (24) |
# max per session (32) | max per day (32) | cards allowed (1) | lower terms pending (1) |
# registered (1)
DAY_SHIFT: constant(uint256) = 64
SPENT_SHIFT: constant(uint256) = 80
TERMS_SHIFT: constant(uint256) = 112
TERMS_BITS: constant(uint256) = 2**138 - 1  # the terms, cards bit included
CARDS_BIT: constant(uint256) = 2**248
PENDING_BIT: constant(uint256) = 2**249
REGISTERED_BIT: constant(uint256) = 2**250

# reasons an entry is not paid
UNKNOWN_STATION: constant(uint256) = 1
UNKNOWN_DRIVER: constant(uint256) = 2
ABOVE_STATION_POWER: constant(uint256) = 3
ABOVE_PRICES: constant(uint256) = 4
ABOVE_SESSION_LIMIT: constant(uint256) = 5
CARDS_NOT_ALLOWED: constant(uint256) = 6
BAD_AUTHORIZATION: constant(uint256) = 7
NONCE_USED: constant(uint256) = 8
AUTHORIZATION_EXPIRED: constant(uint256) = 9
ABOVE_DAILY_LIMIT: constant(uint256) = 10
ESCROW_TOO_LOW: constant(uint256) = 11
UNKNOWN_KIND: constant(uint256) = 12

DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
AUTH_TYPEHASH: constant(bytes32) = keccak256(
    "SessionAuthorization(address driver,uint256 station,uint256 maxPerKwh,"
    "uint256 maxPerMinute,uint256 maxSessionFee,uint256 maxAmount,uint256 nonce,"
    "uint256 expiry)")

# -- configuration (fixed at deploy) ------------------------------------------------------
operator: public(immutable(address))
platform: public(immutable(address))  # receives the fee
fee_bps: public(immutable(uint256))
notice_period: public(immutable(uint256))
token: public(immutable(address))  # an ERC-20, or the native coin when empty
unit: public(immutable(uint256))  # token base units per billing unit (amounts, terms)
DOMAIN_SEPARATOR: public(immutable(bytes32))

# -- drivers -------------------------------------------------------------------------------
driver_index: public(HashMap[address, uint256])  # 0: not a driver
driver_address: public(HashMap[uint256, address])
driver_count: public(uint256)
driver_slot: HashMap[uint256, uint256]  # see "A driver's state"
pending_terms: HashMap[uint256, uint256]  # terms (138 bits) | applies from (64, at 160)
withdrawal: HashMap[uint256, uint256]  # billing units (64) | available at (64, at 64)
cards: public(HashMap[uint256, HashMap[bytes32, bool]])  # driver -> commitment -> linked
nonce_bits: HashMap[uint256, HashMap[uint256, uint256]]  # driver -> nonce / 256 -> bits

# -- hosts and stations --------------------------------------------------------------------
station_info: HashMap[uint256, uint256]  # host (160) | max power in W (32)
station_count: public(uint256)
earnings: public(HashMap[address, uint256])  # token base units, withdrawn by the account

# -- ledgers -------------------------------------------------------------------------------
ledger_next: public(HashMap[uint256, uint256])  # next sequence number; 0: not registered
chunk_digest: public(HashMap[uint256, HashMap[uint256, bytes32]])  # ledger -> first seq


@deploy
def __init__(notice: uint256, token_: address, unit_: uint256, platform_: address,
             fee_bps_: uint256):
    assert fee_bps_ <= MAX_FEE_BPS, "fee above the maximum"
    assert unit_ > 0 and unit_ <= 10**18, "unit out of range"
    assert notice > 0, "a notice period is needed"
    operator = msg.sender
    platform = platform_ if platform_ != empty(address) else msg.sender
    fee_bps = fee_bps_
    notice_period = notice
    token = token_
    unit = unit_
    DOMAIN_SEPARATOR = keccak256(abi_encode(
        DOMAIN_TYPEHASH, keccak256("voltledger"), keccak256("2"), chain.id, self))
    self.earnings[platform] = 1  # see withdraw_earnings


# -- drivers -------------------------------------------------------------------------------
@internal
def _driver(who: address) -> uint256:
    index: uint256 = self.driver_index[who]
    if index == 0:
        index = self.driver_count + 1
        self.driver_count = index
        self.driver_index[who] = index
        self.driver_address[index] = who
        self.driver_slot[index] = REGISTERED_BIT
        log DriverRegistered(driver=who, index=index)
    return index


@external
def register_driver() -> uint256:
    """Become a driver (an escrow owned by this account); returns the driver index."""
    return self._driver(msg.sender)


@internal
def _credit(index: uint256, received: uint256):
    assert received % unit == 0, "deposit a whole number of billing units"
    slot: uint256 = self.driver_slot[index]
    balance: uint256 = (slot & M64) + received // unit
    assert balance <= M64, "balance too large"
    self.driver_slot[index] = (slot & ~M64) | balance
    log Deposited(driver=msg.sender, amount=received)


@external
@payable
@nonreentrant
def deposit():
    """Deposit the native coin into the caller's escrow."""
    assert token == empty(address), "this escrow takes the token: deposit_token"
    self._credit(self._driver(msg.sender), msg.value)


@external
@nonreentrant
def deposit_token(amount: uint256):
    """Deposit ERC-20 tokens (approve first). What arrives is credited: a token that takes a
    fee on transfer credits less (and is refused when that is not a whole billing unit), so
    the contract stays solvent."""
    assert token != empty(address), "this escrow takes the native coin: deposit"
    before: uint256 = staticcall IERC20(token).balanceOf(self)
    assert extcall IERC20(token).transferFrom(msg.sender, self, amount,
                                               default_return_value=True), "transfer failed"
    received: uint256 = staticcall IERC20(token).balanceOf(self) - before
    self._credit(self._driver(msg.sender), received)


@internal
@pure
def _pack_terms(per_kwh: uint256, per_minute: uint256, fee: uint256, per_session: uint256,
                per_day: uint256, allow_cards: bool) -> uint256:
    """Terms as the 138 bits they take in a driver's slot (before the shift)."""
    packed: uint256 = per_kwh | (per_minute << 24) | (fee << 48) | (per_session << 72) \
        | (per_day << 104)
    if allow_cards:
        packed |= 2**136
    return packed


@internal
@view
def _terms_now(index: uint256, slot: uint256) -> uint256:
    """The terms in force (138 bits): the pending lower ones once their notice has passed."""
    if slot & PENDING_BIT != 0:
        pending: uint256 = self.pending_terms[index]
        if block.timestamp >= pending >> 160:
            return pending & TERMS_BITS
    return (slot >> TERMS_SHIFT) & TERMS_BITS


@external
def set_terms(max_per_kwh: uint256, max_per_minute: uint256, max_session_fee: uint256,
              max_per_session: uint256, max_per_day: uint256, allow_cards: bool):
    """State the prices (billing units per kWh, per minute, per session) and limits (per
    session, per day) the caller accepts, and whether card sessions may be charged.

    What raises the terms applies at once; what lowers them applies after the notice
    period (sessions charged before are still paid under the old terms)."""
    assert max_per_kwh <= M24 and max_per_minute <= M24 and max_session_fee <= M24, \
        "price out of range"
    assert max_per_session <= M32 and max_per_day <= M32, "limit out of range"
    index: uint256 = self._driver(msg.sender)
    slot: uint256 = self.driver_slot[index]
    old: uint256 = self._terms_now(index, slot)
    new: uint256 = self._pack_terms(max_per_kwh, max_per_minute, max_session_fee,
                                    max_per_session, max_per_day, allow_cards)
    # what applies now: each field the higher of old and new
    now_terms: uint256 = self._pack_terms(
        max(max_per_kwh, old & M24), max(max_per_minute, (old >> 24) & M24),
        max(max_session_fee, (old >> 48) & M24), max(max_per_session, (old >> 72) & M32),
        max(max_per_day, (old >> 104) & M32), allow_cards or old & 2**136 != 0)
    effective: uint256 = block.timestamp
    flags: uint256 = REGISTERED_BIT
    if now_terms != new:
        effective = block.timestamp + notice_period
        self.pending_terms[index] = new | (effective << 160)
        flags |= PENDING_BIT
    self.driver_slot[index] = (slot & (2**112 - 1)) | (now_terms << TERMS_SHIFT) | flags
    log TermsSet(driver=msg.sender, terms=new, effective_at=effective)


@external
def link_card(commitment: bytes32, linked: bool):
    """Link (or unlink) a card: commitment = keccak256(abi_encode(driver, tag, salt)) with a
    salt only the driver and the operator know; the chain never sees the tag."""
    index: uint256 = self._driver(msg.sender)
    self.cards[index][commitment] = linked
    log CardLinked(driver=msg.sender, commitment=commitment, linked=linked)


@external
def request_withdrawal(amount: uint256):
    """Announce a withdrawal (billing units); it may be made after the notice period."""
    index: uint256 = self.driver_index[msg.sender]
    assert index != 0, "not a driver"
    assert amount <= M64, "amount out of range"
    available: uint256 = block.timestamp + notice_period
    self.withdrawal[index] = amount | (available << 64)
    log WithdrawalRequested(driver=msg.sender, amount=amount, available_at=available)


@internal
def _send(to: address, amount: uint256):
    if token == empty(address):
        # a full call, not send(): smart-contract wallets can receive
        raw_call(to, b"", value=amount)
    else:
        assert extcall IERC20(token).transfer(to, amount, default_return_value=True), \
            "transfer failed"


@external
@nonreentrant
def withdraw(to: address):
    """Withdraw what was announced (at most the balance) to any address."""
    index: uint256 = self.driver_index[msg.sender]
    assert index != 0, "not a driver"
    request: uint256 = self.withdrawal[index]
    assert request != 0, "request a withdrawal first"
    assert block.timestamp >= request >> 64, "notice period not over"
    slot: uint256 = self.driver_slot[index]
    amount: uint256 = min(request & M64, slot & M64)
    self.driver_slot[index] = slot - amount
    self.withdrawal[index] = 0
    self._send(to, amount * unit)
    log Withdrawn(driver=msg.sender, to=to, amount=amount * unit)


@external
@view
def driver_state(who: address) -> (uint256, uint256, uint256, uint256, uint256, uint256):
    """(index, balance, spent today, terms now, pending terms | applies from << 160,
    withdrawal amount | available at << 64) of a driver: amounts in billing units, terms
    packed as in `_pack_terms`."""
    index: uint256 = self.driver_index[who]
    slot: uint256 = self.driver_slot[index]
    spent: uint256 = 0
    if (slot >> DAY_SHIFT) & M16 == (block.timestamp // 86400) & M16:
        spent = (slot >> SPENT_SHIFT) & M32
    pending: uint256 = 0
    if slot & PENDING_BIT != 0:
        pending = self.pending_terms[index]
    return (index, slot & M64, spent, self._terms_now(index, slot), pending,
            self.withdrawal[index])


# -- hosts and stations --------------------------------------------------------------------
@external
def register_station(max_power_w: uint256) -> uint256:
    """A host registers a station it owns: payments for its sessions go to the caller."""
    assert max_power_w > 0 and max_power_w <= M32, "power out of range"
    index: uint256 = self.station_count + 1
    assert index <= M40, "too many stations"
    self.station_count = index
    self.station_info[index] = convert(msg.sender, uint256) | (max_power_w << 160)
    if self.earnings[msg.sender] == 0:
        self.earnings[msg.sender] = 1  # see withdraw_earnings: the host pays the slot once
    log StationRegistered(station=index, host=msg.sender, max_power_w=max_power_w)
    return index


@external
@view
def station(index: uint256) -> (address, uint256):
    """(host, maximum power in W) of a registered station."""
    info: uint256 = self.station_info[index]
    return (convert(info & M160, address), info >> 160)


@external
@nonreentrant
def withdraw_earnings(to: address):
    """A host (or the platform) withdraws what it earned, to any address.

    One base unit stays in the account's slot: crediting a slot that is not zero costs
    17,100 gas less, at every settlement (the unit is the account's, withdrawn last)."""
    held: uint256 = self.earnings[msg.sender]
    assert held > 1, "nothing earned"
    self.earnings[msg.sender] = 1
    self._send(to, held - 1)
    log EarningsWithdrawn(account=msg.sender, to=to, amount=held - 1)


# -- settlement ----------------------------------------------------------------------------
@external
def register_ledger(ledger: uint256):
    """A ledger (one central system database) settles with sequence numbers from 1."""
    assert msg.sender == operator, "only the operator"
    assert ledger != 0 and self.ledger_next[ledger] == 0, "ledger already registered"
    self.ledger_next[ledger] = 1
    log LedgerRegistered(ledger=ledger)


@internal
def _check_authorization(driver_index: uint256, station_index: uint256, energy: uint256,
                         duration: uint256, amount: uint256, a: Auth) -> uint256:
    """0 when the driver signed this session (station, prices, amount, unused nonce,
    not expired); the nonce is then used up."""
    driver: address = self.driver_address[driver_index]
    digest: bytes32 = keccak256(concat(
        b"\x19\x01", DOMAIN_SEPARATOR,
        keccak256(abi_encode(AUTH_TYPEHASH, driver, station_index, a.packed & M24,
                             (a.packed >> 24) & M24, (a.packed >> 48) & M24,
                             (a.packed >> 72) & M32, (a.packed >> 104) & M48,
                             (a.packed >> 152) & (2**40 - 1)))))
    vs: uint256 = convert(a.vs, uint256)
    signer: address = ecrecover(digest, unsafe_add(27, vs >> 255), convert(a.r, uint256),
                                vs & (2**255 - 1))
    if signer != driver or signer == empty(address):
        return BAD_AUTHORIZATION
    if block.timestamp > (a.packed >> 152) & (2**40 - 1):
        return AUTHORIZATION_EXPIRED
    if amount > (a.packed >> 72) & M32:
        return ABOVE_SESSION_LIMIT
    if not self._within_prices(energy, duration, amount, a.packed):
        return ABOVE_PRICES
    nonce: uint256 = (a.packed >> 104) & M48
    word: uint256 = self.nonce_bits[driver_index][nonce >> 8]
    bit: uint256 = 1 << (nonce & 255)
    if word & bit != 0:
        return NONCE_USED
    self.nonce_bits[driver_index][nonce >> 8] = word | bit
    return 0


@external
@view
def nonce_used(driver: address, nonce: uint256) -> bool:
    """Whether the driver's signed authorization with ``nonce`` was settled (used up)."""
    index: uint256 = self.driver_index[driver]
    return self.nonce_bits[index][nonce >> 8] & (1 << (nonce & 255)) != 0


@internal
@pure
def _within_prices(energy: uint256, duration: uint256, amount: uint256,
                   prices: uint256) -> bool:
    """amount <= energy x price/kWh + duration x price/min + fee, plus one unit of rounding;
    ``prices`` = per kWh (24) | per minute (24) | fee (24). Bounded inputs: no overflow."""
    bound: uint256 = unsafe_add(unsafe_add(
        unsafe_mul(unsafe_mul(energy, prices & M24), 60),
        unsafe_mul(unsafe_mul(duration, (prices >> 24) & M24), 1000)),
        unsafe_mul(unsafe_add((prices >> 48) & M24, 1), 60000))
    return unsafe_mul(amount, 60000) <= bound


@external
def settle(ledger: uint256, first_seq: uint256, entries: DynArray[Entry, MAX_ENTRIES],
           auths: DynArray[Auth, MAX_AUTHS]):
    """Settle the next chunk of a ledger: check and pay each entry, store its digest."""
    assert msg.sender == operator, "only the operator settles"
    assert self.ledger_next[ledger] != 0, "ledger not registered"
    assert first_seq == self.ledger_next[ledger], "not the ledger's next sequence number"
    count: uint256 = len(entries)
    assert count > 0, "empty chunk"
    self.ledger_next[ledger] = first_seq + count
    digest: bytes32 = keccak256(abi_encode(ledger, first_seq))
    today: uint256 = (block.timestamp // 86400) & M16
    # station slots: index, max power x 101, host, what it earns in this chunk
    slot_station: uint256[MAX_STATIONS] = empty(uint256[MAX_STATIONS])
    slot_power: uint256[MAX_STATIONS] = empty(uint256[MAX_STATIONS])
    slot_host: address[MAX_STATIONS] = empty(address[MAX_STATIONS])
    slot_credit: uint256[MAX_STATIONS] = empty(uint256[MAX_STATIONS])
    slots_used: uint256 = 0
    fees: uint256 = 0
    # the current run of one driver's entries: its slot is read once and written once, its
    # terms are unpacked once
    run_driver: uint256 = 0
    run_slot: uint256 = 0
    run_kwh: uint256 = 0  # max per kWh x 60
    run_minute: uint256 = 0  # max per minute x 1000
    run_fee: uint256 = 0  # (max session fee + 1 unit of rounding) x 60000
    run_session: uint256 = 0
    run_day: uint256 = 0
    run_cards: bool = False
    cursor: uint256 = 0
    paid: uint256 = 0
    unpaid: uint256 = 0
    for i: uint256 in range(count, bound=MAX_ENTRIES):
        e: Entry = entries[i]
        packed: uint256 = e.packed
        digest = keccak256(abi_encode(digest, e.record_hash, packed))  # H_i-1 ++ hash ++ packed
        station_index: uint256 = (packed & M24) | ((packed >> 184) << 24)
        driver: uint256 = (packed >> 24) & M32
        energy: uint256 = (packed >> 56) & M32
        duration: uint256 = (packed >> 88) & M32
        amount: uint256 = (packed >> 120) & M48
        kind: uint256 = (packed >> 168) & M8
        s: uint256 = (packed >> 176) & M8
        # the station, through its slot (the operator's input: a wrong slot reverts)
        if slot_station[s] != station_index:
            assert slot_station[s] == 0 and s == slots_used, "station slots out of order"
            info: uint256 = self.station_info[station_index]
            slot_station[s] = station_index
            slot_power[s] = unsafe_mul(info >> 160, 101)
            slot_host[s] = convert(info & M160, address)
            slots_used = unsafe_add(slots_used, 1)
        # the driver's run
        if driver != run_driver:
            if run_driver != 0:
                self.driver_slot[run_driver] = run_slot
            run_driver = driver
            run_slot = self.driver_slot[driver]
            if (run_slot >> DAY_SHIFT) & M16 != today:  # a new day: nothing spent yet
                run_slot = (run_slot & ~(M16 << DAY_SHIFT) & ~(M32 << SPENT_SHIFT)) \
                    | (today << DAY_SHIFT)
            terms: uint256 = self._terms_now(driver, run_slot)
            run_kwh = unsafe_mul(terms & M24, 60)
            run_minute = unsafe_mul((terms >> 24) & M24, 1000)
            run_fee = unsafe_mul(unsafe_add((terms >> 48) & M24, 1), 60000)
            run_session = (terms >> 72) & M32
            run_day = (terms >> 104) & M32
            run_cards = terms & 2**136 != 0
        # a signed entry's authorization is the next in ``auths`` whatever becomes of the
        # entry: one refused before it is read must not hand its own to the next entry
        auth_at: uint256 = cursor
        if kind == 1:
            cursor = unsafe_add(cursor, 1)
        reason: uint256 = 0
        if slot_power[s] == 0:
            reason = UNKNOWN_STATION
        elif run_slot & REGISTERED_BIT == 0:
            reason = UNKNOWN_DRIVER
        elif unsafe_mul(energy, 360000) > unsafe_mul(slot_power[s],
                                                     unsafe_add(duration, POWER_SLACK_S)):
            reason = ABOVE_STATION_POWER
        elif kind == 0:
            if not run_cards:
                reason = CARDS_NOT_ALLOWED
            elif unsafe_mul(amount, 60000) > unsafe_add(unsafe_add(
                    unsafe_mul(energy, run_kwh), unsafe_mul(duration, run_minute)), run_fee):
                reason = ABOVE_PRICES
            elif amount > run_session:
                reason = ABOVE_SESSION_LIMIT
        elif kind == 1:
            if auth_at < len(auths):
                reason = self._check_authorization(driver, station_index, energy, duration,
                                                   amount, auths[auth_at])
            else:
                reason = BAD_AUTHORIZATION
        else:
            reason = UNKNOWN_KIND
        if reason == 0:
            spent: uint256 = unsafe_add((run_slot >> SPENT_SHIFT) & M32, amount)
            if spent > run_day:
                reason = ABOVE_DAILY_LIMIT
            elif amount > run_slot & M64:
                reason = ESCROW_TOO_LOW
            else:
                run_slot = (unsafe_sub(run_slot, amount) & ~(M32 << SPENT_SHIFT)) \
                    | (spent << SPENT_SHIFT)
                slot_credit[s] = unsafe_add(slot_credit[s], amount)
                paid = unsafe_add(paid, amount)
        if reason != 0:
            unpaid = unsafe_add(unpaid, 1)
            log Unpaid(ledger=ledger, seq=unsafe_add(first_seq, i), reason=reason)
    if run_driver != 0:
        self.driver_slot[run_driver] = run_slot
    # each station's host is credited what its sessions paid, less the platform's fee
    for k: uint256 in range(MAX_STATIONS):
        if k >= slots_used:
            break
        if slot_credit[k] != 0:
            fee: uint256 = slot_credit[k] * fee_bps // 10000
            fees += fee
            self.earnings[slot_host[k]] += (slot_credit[k] - fee) * unit
    if fees != 0:
        self.earnings[platform] += fees * unit
    self.chunk_digest[ledger][first_seq] = digest
    log Settled(ledger=ledger, first_seq=first_seq, count=count, root=digest, paid=paid,
                unpaid=unpaid)
