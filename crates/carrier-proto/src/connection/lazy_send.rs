//! The send side of a connection, created on the first message queued.
//!
//! [`SendState`] (the priority queues, the retransmission queues and the streams' numbering) is
//! some 340 bytes that a connection which never sends a message does not need: a game server's
//! idle or receive-only connections are the common case. [`LazySend`] is one pointer: it boxes a
//! `SendState` on the first `enqueue`, built by the connection from its configuration and agreed
//! limits (so nothing is stored twice); until then it answers as an empty send side would. It offers the `SendState` methods the connection uses,
//! with the same meaning.

use std::time::Instant;

use bytes::Bytes;

use crate::StreamKey;
use crate::frame::EncodeContext;
use crate::send::{Filled, ReliableFrame, SendState};
use crate::wire::Writer;

/// A [`SendState`] created on first use (module docs).
#[derive(Debug, Default)]
pub(crate) struct LazySend {
    state: Option<Box<SendState>>,
}

impl LazySend {
    /// See [`SendState::configure`]; a send side created later is built with the new values
    /// by its `create` function (see [`enqueue`](Self::enqueue)).
    pub(crate) fn configure(&mut self, peer_window: usize, fragment_size: usize) {
        if let Some(s) = &mut self.state {
            s.configure(peer_window, fragment_size);
        }
    }

    /// See [`SendState::expired`].
    pub(crate) fn expired(&self) -> u64 {
        self.state.as_ref().map_or(0, |s| s.expired())
    }

    /// See [`SendState::queued_bytes`].
    pub(crate) fn queued_bytes(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.queued_bytes())
    }

    /// See [`SendState::queued_messages`].
    pub(crate) fn queued_messages(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.queued_messages())
    }

    /// See [`SendState::has_pending`].
    pub(crate) fn has_pending(&self) -> bool {
        self.state.as_ref().is_some_and(|s| s.has_pending())
    }

    /// See [`SendState::enqueue`]; creates the send side with `create` on first use.
    #[inline]
    pub(crate) fn enqueue(
        &mut self,
        key: StreamKey,
        reliable: bool,
        payload: Bytes,
        max_unsplit: usize,
        now: Instant,
        create: impl FnOnce() -> SendState,
    ) {
        let state = self.state.get_or_insert_with(|| Box::new(create()));
        state.enqueue(key, reliable, payload, max_unsplit, now);
    }

    /// See [`SendState::stamp`].
    pub(crate) fn stamp(&mut self, now: Instant) {
        if let Some(s) = &mut self.state {
            s.stamp(now);
        }
    }

    /// See [`SendState::expire_unreliable`].
    pub(crate) fn expire_unreliable(&mut self, now: Instant) {
        if let Some(s) = &mut self.state {
            s.expire_unreliable(now);
        }
    }

    /// See [`SendState::fill`]; writes nothing before the first message.
    pub(crate) fn fill(
        &mut self,
        w: &mut Writer<'_>,
        ctx: &mut EncodeContext,
        sent: &mut Vec<ReliableFrame>,
        now: Instant,
    ) -> Filled {
        self.state
            .as_mut()
            .map_or_else(Filled::default, |s| s.fill(w, ctx, sent, now))
    }

    /// See [`SendState::on_acked_frames`].
    pub(crate) fn on_acked_frames(&mut self, frames: &[ReliableFrame]) {
        if let Some(s) = &mut self.state {
            s.on_acked_frames(frames);
        }
    }

    /// See [`SendState::on_lost`].
    pub(crate) fn on_lost(&mut self, frame: ReliableFrame) {
        if let Some(s) = &mut self.state {
            s.on_lost(frame);
        }
    }

    /// See [`SendState::clear`].
    pub(crate) fn clear(&mut self) {
        if let Some(s) = &mut self.state {
            s.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{ChannelId, Priority};

    #[test]
    fn nothing_is_allocated_until_the_first_message_and_settings_carry_over() {
        #[allow(clippy::disallowed_methods)] // a test's fixed epoch
        let now = Instant::now();
        let mut s = LazySend::default();
        s.configure(1 << 20, 1000);
        assert!(s.state.is_none());
        assert!(!s.has_pending());
        assert_eq!(
            (s.queued_bytes(), s.queued_messages(), s.expired()),
            (0, 0, 0)
        );
        s.clear();
        assert!(s.state.is_none());
        let key = StreamKey {
            channel: ChannelId::new(0),
            priority: Priority::Normal,
        };
        s.enqueue(key, false, Bytes::from_static(b"hello"), 100, now, || {
            let mut state = SendState::new(7, now);
            state.configure(1 << 20, 1000);
            state.set_unreliable_ttl(Duration::from_millis(50));
            state
        });
        assert!(s.has_pending());
        assert_eq!((s.queued_bytes(), s.queued_messages()), (5, 1));
        // The TTL was applied when the state was created: the message expires after 50 ms.
        let mut buf = [0u8; 0];
        let mut w = Writer::new(&mut buf);
        let mut ctx = EncodeContext::default();
        let mut sent = Vec::new();
        s.fill(&mut w, &mut ctx, &mut sent, now + Duration::from_millis(60));
        assert_eq!(s.expired(), 1);
        assert!(!s.has_pending());
    }
}
