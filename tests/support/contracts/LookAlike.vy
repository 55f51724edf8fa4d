# pragma version ~=0.4.3
"""
@title A stranger's look-alike of the settlement contract, for tests: the same ABI for what
       a verifier reads (settle's input, Settled, chunk_digest, driver_index, cards), but it
       holds no escrow: it says any address is whichever driver index it was told, that any
       card is linked, and stores the digest of whatever chunk it is given.
"""

event Settled:
    ledger: indexed(uint256)
    first_seq: indexed(uint256)
    count: uint256
    root: bytes32
    paid: uint256
    unpaid: uint256

struct Entry:
    record_hash: bytes32
    packed: uint256

struct Auth:
    packed: uint256
    r: bytes32
    vs: bytes32

chunk_digest: public(HashMap[uint256, HashMap[uint256, bytes32]])
claimed: HashMap[address, uint256]


@external
def claim(who: address, index: uint256):
    self.claimed[who] = index


@external
@view
def driver_index(who: address) -> uint256:
    return self.claimed[who]


@external
@view
def cards(index: uint256, commitment: bytes32) -> bool:
    return True


@external
def settle(ledger: uint256, first_seq: uint256, entries: DynArray[Entry, 1024],
           auths: DynArray[Auth, 256]):
    digest: bytes32 = keccak256(abi_encode(ledger, first_seq))
    for e: Entry in entries:
        digest = keccak256(abi_encode(digest, e.record_hash, e.packed))
    self.chunk_digest[ledger][first_seq] = digest
    log Settled(ledger=ledger, first_seq=first_seq, count=len(entries), root=digest,
                paid=0, unpaid=0)
