//! `mem-per-order`: heap bytes per open order, per finished (terminal) order held by the
//! engine, and per idempotency key in the index — measured with a counting allocator, so the
//! figures in perf/RESULTS.md (issue 11: "memory per open and per terminal order") are exact
//! live bytes rather than RSS deltas blurred by the allocator's retained pages.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use oms_core::command::{Command, PlaceOrder, RiskDecision};
use oms_core::idempotency::{AnswerIndex, AnswerLoc, AnswerSource, StoredAnswer};
use oms_core::ports::IdemKey;
use oms_core::{
    AccountId, Engine, EngineConfig, IdempotencyKey, InstrumentTable, Money, OrderId, OrderRequest,
    RiskConfig, validate,
};

/// The system allocator, counting live bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
/// The highest `LIVE` since the last [`reset_peak`].
static PEAK: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; only a counter is updated besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(l.size() as isize, Ordering::Relaxed) + l.size() as isize;
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let d = new as isize - l.size() as isize;
        PEAK.fetch_max(LIVE.fetch_add(d, Ordering::Relaxed) + d, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn reset_peak() {
    PEAK.store(live(), Ordering::Relaxed);
}

fn peak() -> isize {
    PEAK.load(Ordering::Relaxed)
}

/// Resets the kernel's peak-RSS mark of this process (`clear_refs` 5) and returns the RSS
/// now, in bytes; 0 where /proc does not allow it.
fn reset_rss_peak() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_kb("VmRSS:") * 1024
}

/// The peak RSS since [`reset_rss_peak`], in bytes.
fn rss_peak() -> u64 {
    status_kb("VmHWM:") * 1024
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Orders of each kind unless the first argument says otherwise: the per-order cost of a
/// hash table depends on where its length falls between two growths, so compare sizes.
const DEFAULT_N: u64 = 200_000;

fn place(table: &InstrumentTable, i: u64, side: &str, price: u64, accounts: u64) -> Command {
    let px = price.to_string();
    let order = validate(
        table,
        &OrderRequest {
            symbol: "BTC/USD",
            side,
            quantity: "0.001",
            price: Some(&px),
            ..Default::default()
        },
    )
    .expect("valid order");
    Command::Place(PlaceOrder {
        order_id: OrderId(u128::from(i + 1)),
        account: AccountId::new(&format!("acct{}", i % accounts)).expect("account"),
        order,
        ts: 1_700_000_000_000_000_000 + i * 1_000,
        idempotency_key: Some(IdempotencyKey::new(&format!("key-{i}")).expect("key")),
        fingerprint: i,
        correlation_id: None,
        risk: RiskDecision::Unchecked,
    })
}

fn engine(table: &InstrumentTable) -> Engine {
    Engine::new(
        table.clone(),
        EngineConfig {
            risk: RiskConfig {
                max_open_orders: u32::MAX,
                dev_default_equity: Some(Money::parse("1000000000").expect("money")),
                ..RiskConfig::default()
            },
            retain_terminal: usize::MAX,
            ..EngineConfig::default()
        },
    )
}

struct NoAnswers;

impl AnswerSource for NoAnswers {
    fn answer(&self, _: AnswerLoc) -> Option<StoredAnswer> {
        None
    }
    fn is_live(&self, _: AnswerLoc) -> bool {
        true
    }
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(DEFAULT_N);
    let table = InstrumentTable::demo();
    let mut ev = Vec::new();

    // Open orders: buys resting on 1 000 price levels inside the band (43 001–44 000 under a
    // 45 000 reference, ±5 %), 1 000 accounts. Checked below: they rest on the book.
    let mut e = engine(&table);
    let cmds: Vec<Command> = (0..n)
        .map(|i| place(&table, i, "BUY", 44_000 - i % 1_000, 1_000))
        .collect();
    let before = live();
    for c in &cmds {
        ev.clear();
        e.apply(c, &mut ev);
    }
    let open = (live() - before) as f64 / n as f64;
    assert_eq!(e.order_count() as u64, n);
    let btc = table.lookup("BTC/USD").expect("BTC/USD").id;
    assert_eq!(
        e.book(btc).len() as u64,
        n,
        "the open orders must rest on the book"
    );
    // The processor stops for the capture (`oms_snapshot_capture_seconds`); the snapshot
    // thread encodes it (`oms_snapshot_encode_seconds`).
    let (mut capture, mut encode) = (f64::MAX, f64::MAX);
    let (mut bytes, mut extra, mut resident) = (0, 0, 0);
    for _ in 0..3 {
        let base = live();
        reset_peak();
        let rss = reset_rss_peak();
        let t = std::time::Instant::now();
        let c = e.capture();
        capture = capture.min(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        let image = c.encode();
        encode = encode.min(t.elapsed().as_secs_f64());
        bytes = image.len();
        // The heap a snapshot needs on top of the engine, the image's capacity included,
        // and the memory it makes resident (pages touched), which is what RSS shows.
        extra = peak() - base;
        resident = rss_peak().saturating_sub(rss);
    }
    drop(e);

    // Finished orders: crossing pairs that fill at once (FILLED, held as terminal).
    let mut e = engine(&table);
    let cmds: Vec<Command> = (0..n)
        .map(|i| {
            let side = if i % 2 == 0 { "BUY" } else { "SELL" };
            place(&table, i, side, 45_000 + (i / 2) % 50, 1_000)
        })
        .collect();
    let before = live();
    for c in &cmds {
        ev.clear();
        e.apply(c, &mut ev);
    }
    let terminal = (live() - before) as f64 / n as f64;
    let mut out = Vec::new();
    e.take_evicted(&mut out);
    assert!(out.is_empty());
    drop(e);

    // Idempotency keys: the index alone (the answers are on disk).
    let mut idx = AnswerIndex::new();
    let keys: Vec<IdemKey> = (0..n)
        .map(|i| IdemKey {
            account: AccountId::new(&format!("acct{}", i % 1_000)).expect("account"),
            key: IdempotencyKey::new(&format!("key-{i}")).expect("key"),
        })
        .collect();
    let before = live();
    for (i, k) in keys.iter().enumerate() {
        idx.insert(k, i as u64, &NoAnswers);
    }
    let key = (live() - before) as f64 / n as f64;
    println!("heap bytes per open order (engine, {n} resting):      {open:.0}");
    println!(
        "snapshot of those {n} open orders: {:.1} MB; processor waits {:.1} ms (capture), \
         encoded in {:.1} ms (best of 3 each); on top of the engine at the peak: heap {:.1} MB \
         (the image's whole allocation included), resident {:.1} MB",
        bytes as f64 / 1e6,
        capture * 1e3,
        encode * 1e3,
        extra as f64 / 1e6,
        resident as f64 / 1e6
    );
    println!("heap bytes per finished order held (engine, {n} filled): {terminal:.0}");
    println!("heap bytes per idempotency key (index, {n} keys):    {key:.0}");
    println!(
        "size_of: IdemKey {} B, Order {} B",
        std::mem::size_of::<IdemKey>(),
        std::mem::size_of::<oms_core::Order>()
    );
}
