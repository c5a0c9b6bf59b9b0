//! The endpoint's address → connection table.
//!
//! A `HashMap<SocketAddr, ConnectionId>` bucket is 41 B (a 32 B address, an 8 B id and a control
//! byte), and at 1,000 connections the map has 2,048 buckets: 84 B per connection. Every
//! connection already stores its remote address, so this table holds only ids (9 B a bucket)
//! and compares the address of the connection an id names. The hash stays std's keyed SipHash:
//! the keys come from the network, and a fast unkeyed hash would let a peer choose colliding
//! source addresses.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;

use hashbrown::HashTable;

use crate::ConnectionId;
use crate::connection::Connection;

/// The endpoint's connections, by id.
pub(crate) type Connections = BTreeMap<ConnectionId, Box<Connection>>;

/// Ids of connections, found by their remote address.
///
/// Invariant: every id in the table names a connection of `connections` (the map passed to
/// each call) whose remote address is the one the id was inserted with, and an address has at
/// most one id.
#[derive(Default)]
pub(crate) struct AddrTable {
    hasher: RandomState,
    table: HashTable<ConnectionId>,
    /// The last address found and its id: datagrams come in runs from the same peer (a client
    /// has one), and a hit skips the keyed hash. Cleared by every change of the table.
    last: Cell<Option<(SocketAddr, ConnectionId)>>,
}

/// The remote address of connection `id` (none if there is no such connection).
fn remote(connections: &Connections, id: ConnectionId) -> Option<SocketAddr> {
    connections.get(&id).map(|c| c.remote_addr())
}

impl AddrTable {
    fn hash(&self, addr: &SocketAddr) -> u64 {
        self.hasher.hash_one(addr)
    }

    /// The connection whose address is `addr`.
    #[inline]
    pub(crate) fn get(&self, addr: &SocketAddr, connections: &Connections) -> Option<ConnectionId> {
        if let Some((a, id)) = self.last.get()
            && a == *addr
        {
            return Some(id);
        }
        let found = self
            .table
            .find(self.hash(addr), |&id| {
                remote(connections, id) == Some(*addr)
            })
            .copied();
        if let Some(id) = found {
            self.last.set(Some((*addr, id)));
        }
        found
    }

    /// Whether a connection has address `addr`.
    pub(crate) fn contains(&self, addr: &SocketAddr, connections: &Connections) -> bool {
        self.get(addr, connections).is_some()
    }

    /// Maps `addr` to `id`, replacing the id it had. `id` must be in `connections` with remote
    /// address `addr`.
    pub(crate) fn insert(&mut self, addr: SocketAddr, id: ConnectionId, connections: &Connections) {
        self.last.set(None);
        let hash = self.hash(&addr);
        let hasher = &self.hasher;
        match self.table.entry(
            hash,
            |&e| remote(connections, e) == Some(addr),
            // Rehashing: every id in the table names a connection (invariant).
            |&e| remote(connections, e).map_or(0, |a| hasher.hash_one(a)),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut o) => *o.get_mut() = id,
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(id);
            }
        }
    }

    /// Removes `id`, which was inserted with address `addr`, if it is in the table (it may have
    /// been replaced by another connection of the same address).
    pub(crate) fn remove(&mut self, addr: &SocketAddr, id: ConnectionId) {
        self.last.set(None);
        if let Ok(e) = self.table.find_entry(self.hash(addr), |&e| e == id) {
            e.remove();
        }
    }

    /// Entries.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}
