// Package conntrack is sgswitch's connection table: it remembers the flows
// that policy allowed, so that their later packets and their replies pass
// without rule evaluation, and judges each packet against the state of its
// connection. It imports nothing from the rest of the project.
//
// # Use
//
// Per packet, the switch calls Track. Valid means the packet belongs to a
// tracked connection (Result.Meta tells whether that connection is still
// allowed by the current policy generation); Invalid means it belongs to one
// but fails a check (conntrack-invalid); Miss means it starts a new flow:
// the switch evaluates policy and, when allowed, calls Insert, which can
// refuse when the table is full (conntrack-full) or when the packet cannot
// start a connection (a TCP segment other than a SYN: tracking is strict,
// there is no pick-up of connections seen mid-stream). ICMP errors go to
// Related with the header they quote. Later IPv4 and IPv6 fragments, which
// carry no transport header, take the verdict of their first fragment from
// Fragments.
//
// # Key and canonical order
//
// A Key is the packet's tuple, packed and pointer-free (two 16-byte
// addresses, ports, protocol, zone), so that it is hashed and compared as a
// few machine words and never makes the garbage collector scan the table. A
// connection is stored once, under its tuple with the two endpoints in a
// canonical order (the smaller endpoint first); the entry records which side
// opened the connection. A packet's key is put in the same order before the
// lookup, so a packet from either direction finds its connection with one
// hash lookup, and the order tells its direction. ICMP echo is the exception:
// both directions carry the same identifier, so the stored key is requester
// first and the direction comes from the message type (an echo request from
// the responder is then a new flow, as in Linux).
//
// # Shards and storage
//
// The table is split into shards (64 by default), chosen by the top bits of
// a seeded hash (a per-table random secret, so that a peer cannot aim
// connections at one shard or one probe sequence); each has its own mutex,
// so packets of different connections rarely wait for each other. A shard
// holds a slab of 128-byte entries (key, state, TCP windows, deadline,
// counters and the caller's Meta) in 32 KiB chunks that never move, and an
// open-addressing index of 8-byte slots (32 bits of hash, slab index) with
// linear probing, at most 3/4 full, deleting by backward shift. The small
// slots keep the index's spare capacity cheap and its growth a copy of words;
// the hash in the slot lets a probe skip non-matching entries without reading
// them. The table costs about 146 bytes per connection from a few hundred
// thousand connections up (161 at 100,000; a small table pays one 32 KiB
// chunk per shard, 2 MiB with the default 64 shards). Against
// storing entries inline in the index, this design pays one more cache line
// (and page) per lookup, which shows when the table is far larger than the
// CPU caches; in exchange memory stays proportional to the connections held
// rather than doubling with the index, and entries never move, so a Handle
// (shard, slab index, generation) stays valid until its connection goes. The
// generation, bumped whenever an entry is freed, is what makes a stale Handle
// harmless: it no longer matches, even when its slot holds another
// connection.
//
// # TCP
//
// TCP follows Linux's nf_conntrack_proto_tcp: the same state transition
// table (SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK,
// TIME_WAIT, CLOSE, and SYN_SENT2 for simultaneous open) and the same
// sequence-window checks (Rooij's td_end, td_maxend, td_maxwin per
// direction, window scaling from the SYNs), without SACK. A segment that
// fails a check changes nothing, so data or an RST outside the window cannot
// disturb an established connection. An RST must carry exactly the sequence
// number its receiver expects (RFC 5961), or, answering a SYN, acknowledge it
// exactly; anything else is Invalid. A SYN on a connection in TIME_WAIT or
// CLOSE replaces it: Track reports a Miss, so the new connection passes
// policy. UDP and other protocols are Unreplied until a packet comes back,
// then Replied; only ICMP echo requests open ICMP connections.
//
// # Limits and eviction
//
// Config.Max bounds the entries. When the table is full, Insert looks at a
// bounded number of entries of its shard, from where the previous look
// stopped (Linux early_drop style), and frees an expired one, or else the
// least recently active one that never saw a reply (unreplied UDP, SYN_SENT,
// unanswered ICMP). Connections that saw a reply are never evicted to make
// room: a SYN flood can only displace its own half-open entries.
//
// Config.MaxPerOwner bounds the entries of one owner, Meta.A (the switch's
// port id of the originator), so that one tenant cannot fill the table for
// all. Each owner has an atomic counter, since its entries lie in every
// shard; it changes wherever an entry comes or goes (Insert, expiry, Sweep,
// eviction, Flush, port reuse, Restore, a SetMeta that changes A), never on
// Track's hit path. An Insert whose owner is at its cap looks at a bounded
// number of entries of its shard, as the early drop does, but only at the
// owner's own: it frees an expired one, else the least recently active
// unreplied one, else refuses (Result.Refused tells RefusedOwnerFull from
// RefusedTableFull). Another owner's entry never gives way to an owner at
// its cap, so a flood from one port leaves the others the rest of the
// table. The scan finds the owner's entries when they are a fair part of the
// shard, as in a flood; an owner whose few entries lie elsewhere is refused,
// which is its cap working. Owner ids from 0 to MaxOwnerID have counters of
// their own, allocated in chunks as they are first seen (at most 8 MiB);
// all the others share one counter and one cap.
//
// # Expiry
//
// Each entry holds a deadline from the Clock. Expiry costs the packet path
// nothing: Track treats an expired entry as a Miss and frees it on the spot.
// Sweep frees the others incrementally, a bounded batch per hold of a shard
// lock, and Run sweeps in the background. Time is injected (Clock) so that
// tests advance a ManualClock instead of sleeping; for the packet path,
// CoarseClock costs an atomic load where SystemClock costs a clock read.
//
// # Save and restore
//
// For a restart without dropping connections, Save writes the live
// connections to a file and Restore adds them to the new process's table: a
// versioned little-endian format (magic "SGSWCONN", version, record size,
// count, fixed 124-byte records, CRC-32C trailer; see persist.go) holding
// everything Track depends on, with each timeout as the time it had left.
// Restore checks all of its input, checksum and every record, before it
// changes anything, so a damaged file leaves the table as it was; it decodes
// into private slabs laid out as the table's own, which the shards of a new
// table adopt whole. A callback remaps each connection's Meta (the switch
// renumbers ports and resets PolicyGen, so that every restored connection is
// checked against the current policy at its next packet) or drops it.
//
// # Cost
//
// Track and Related take one shard lock, probe one index and compare one key;
// they and Fragments.Later allocate nothing. Nothing returned refers to the
// caller's buffers, and no method keeps a reference to its arguments.
package conntrack
