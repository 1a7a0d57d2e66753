//! The ring's slot: one preallocated unit of work, written in place by the producer and then
//! by each stage in turn.
//!
//! The disruptor guarantees that a stage sees a slot only after every stage before it has
//! finished with it (its cursor is published after the batch), and that a producer rewrites a
//! slot only after the last stage has passed it. So at any time exactly one party touches a
//! slot, which is what makes the `UnsafeCell` access below sound.

use std::cell::UnsafeCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use oms_core::command::{AmendOrder, CancelAll, CancelOrder, CorrelationId, PlaceOrder, SetHalt};
use oms_core::{AccountId, IdempotencyKey, OrderRequest};
use oms_wire::ApiError;
use tokio::sync::oneshot;

use crate::telemetry::TraceParent;

/// What the HTTP task receives back.
#[derive(Debug)]
pub enum Reply {
    /// A finished response body (an order, or an idempotent replay of any stored answer).
    Json {
        status: u16,
        body: Vec<u8>,
        replayed: bool,
    },
    Error(ApiError),
}

/// Waiting in the ring; may still be abandoned by its HTTP task.
pub const QUEUED: u8 = 0;
/// The publish stage took it: its outcome will be reported, whatever happens.
pub const COMMITTING: u8 = 1;
/// The HTTP task gave up first: the command is never logged.
pub const ABANDONED: u8 = 2;

/// The HTTP task's handle on its command: the reply channel and the commit/abandon race.
#[derive(Debug)]
pub struct Ticket {
    pub tx: oneshot::Sender<Reply>,
    pub state: Arc<AtomicU8>,
    pub started: Instant,
}

impl Ticket {
    /// Publish stage: claims the command for the log. False if the client already got a 503.
    pub fn commit(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, COMMITTING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub fn reply(self, r: Reply) {
        // The receiver may be gone (client disconnected); nothing else to do then.
        let _ = self.tx.send(r);
    }
}

/// Inline text of at most `N` bytes, copied from the request (no heap).
#[derive(Clone, Copy)]
pub struct Text<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> std::fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Text {
            len: 0,
            bytes: [0; N],
        }
    }
}

impl<const N: usize> Text<N> {
    /// Copies `s`; false if it does not fit.
    pub fn set(&mut self, s: &str) -> bool {
        if s.len() > N || s.len() > u8::MAX as usize {
            return false;
        }
        self.bytes[..s.len()].copy_from_slice(s.as_bytes());
        self.len = s.len() as u8;
        true
    }

    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are copied in, so the bytes are valid UTF-8.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

/// A place request as text, validated by stage 1.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawPlace {
    pub symbol: Text<16>,
    pub side: Text<8>,
    pub order_type: Option<Text<8>>,
    pub time_in_force: Option<Text<8>>,
    pub post_only: bool,
    pub quantity: Text<48>,
    pub price: Option<Text<48>>,
    pub client_order_id: Option<Text<64>>,
}

impl RawPlace {
    /// The request as core's `validate` reads it.
    pub fn request(&self) -> OrderRequest<'_> {
        OrderRequest {
            symbol: self.symbol.as_str(),
            side: self.side.as_str(),
            order_type: self.order_type.as_ref().map(|t| t.as_str()),
            time_in_force: self.time_in_force.as_ref().map(|t| t.as_str()),
            post_only: self.post_only,
            quantity: self.quantity.as_str(),
            price: self.price.as_ref().map(|t| t.as_str()),
            client_order_id: self.client_order_id.as_ref().map(|t| t.as_str()),
        }
    }
}

/// The command a slot carries through the stages. Unboxed: it is written in place into a
/// preallocated slot, so the size difference costs nothing and a box would cost an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy)]
pub enum Work {
    Place {
        raw: RawPlace,
        key: IdempotencyKey,
        fingerprint: u64,
        /// Filled in by the stages (validation result, order id, risk decision).
        cmd: Option<PlaceOrder>,
    },
    Cancel(CancelOrder),
    /// `leaves` is the new remaining quantity risk should reserve for.
    Amend {
        cmd: AmendOrder,
        leaves: oms_core::Qty,
    },
    Halt(SetHalt),
    CancelAll(CancelAll),
}

/// The mutable part of a slot.
pub struct SlotData {
    pub work: Work,
    pub account: AccountId,
    pub correlation_id: Option<CorrelationId>,
    /// The request's trace (traces on and a traced request): the parent of the stages' spans.
    pub trace: Option<TraceParent>,
    /// Present until a stage answers; a slot without a ticket is finished and skipped.
    pub ticket: Option<Ticket>,
}

/// One ring entry.
pub struct Slot {
    data: UnsafeCell<SlotData>,
}

// SAFETY: a slot is only ever accessed by one thread at a time — the producer that claimed its
// sequence, then each stage in dependency order — and the disruptor's sequence barriers
// (acquire/release on the cursors) order those accesses. See the module docs.
unsafe impl Sync for Slot {}

impl Slot {
    pub fn new() -> Self {
        Slot {
            data: UnsafeCell::new(SlotData {
                work: Work::Halt(SetHalt {
                    scope: oms_core::HaltScope::Global,
                    halted: false,
                    ts: 0,
                }),
                account: AccountId::new("none").expect("valid literal"),
                correlation_id: None,
                trace: None,
                ticket: None,
            }),
        }
    }

    /// Exclusive access for whoever currently owns the slot.
    ///
    /// # Safety
    /// The caller must be the producer that claimed this slot's sequence (inside its publish
    /// closure) or the stage currently processing it; see the module docs.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn data(&self) -> &mut SlotData {
        // SAFETY: exclusivity is the caller's contract (one owner at a time, ordered by the
        // disruptor's barriers).
        unsafe { &mut *self.data.get() }
    }
}

impl Slot {
    /// Producer access inside the publish closure (`&mut` proves exclusivity).
    pub fn data_mut(&mut self) -> &mut SlotData {
        self.data.get_mut()
    }
}

impl Default for Slot {
    fn default() -> Self {
        Slot::new()
    }
}
