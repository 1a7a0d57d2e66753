//! Cluster mode (docs/scale-out.md) runs one engine replica per node, and each replica reads
//! the partitions of the log in its own interleaving. These tests pin down what that relies
//! on: the books of a partition depend on that partition's commands alone (same per-partition
//! state hash as a single node applying the merged log), the account state does not depend on
//! the interleaving, and an account's R1 state moves between risk instances exactly.

use oms_core::command::{CancelAll, CancelAllTrigger};
use oms_core::{Command, Engine, HaltScope, InstrumentTable, RiskDecision, RiskEngine, SymbolId};

use crate::determinism::{account, config, decide_amend, generate};

const PARTITIONS: u16 = 2;

fn part(s: SymbolId) -> u16 {
    s.0 % PARTITIONS
}

/// The log as the ring writes it: risk decided up front by an R1 instance fed with the events.
fn recorded(table: &InstrumentTable, n: usize) -> Vec<Command> {
    let mut r1 = RiskEngine::new(table, config().risk);
    let mut engine = Engine::new(table.clone(), config());
    let mut out = Vec::new();
    let mut log = Vec::with_capacity(n);
    let mut cmds = generate(table, 0xc105, n);
    // Every 300th command, an account cancels all its orders (of every symbol): written to
    // every partition, each copy must cancel only its own partition's orders.
    for i in (300..cmds.len()).step_by(300).rev() {
        let ts = cmds[i].ts();
        cmds.insert(
            i,
            Command::CancelAll(CancelAll {
                account: account(i % 50),
                symbol: None,
                side: None,
                trigger: CancelAllTrigger::Request,
                ts,
                correlation_id: None,
            }),
        );
    }
    for cmd in cmds {
        let mut cmd = cmd;
        match &mut cmd {
            Command::Place(p) => {
                p.risk = match r1.check_place(&p.account, p.order_id, &p.order) {
                    Ok(reserved) => RiskDecision::Accepted { reserved },
                    Err(code) => RiskDecision::Rejected(code),
                };
            }
            Command::Amend(a) => a.risk = decide_amend(&mut r1, a, table),
            Command::Halt(h) => r1.set_halt(&h.scope, h.halted),
            Command::Cancel(_) | Command::Void(_) | Command::CancelAll(_) => {}
        }
        out.clear();
        engine.apply(&cmd, &mut out);
        for e in &out {
            r1.on_event(e);
        }
        log.push(cmd);
    }
    log
}

/// Each partition's copy of the log: a command with a symbol goes to that symbol's
/// partition; a halt or an all-symbol cancel-all to every partition (as `KafkaLog` writes).
fn split(log: &[Command]) -> Vec<Vec<Command>> {
    let mut parts = vec![Vec::new(); PARTITIONS as usize];
    for c in log {
        match c.symbol() {
            Some(s) => parts[part(s) as usize].push(*c),
            None => parts.iter_mut().for_each(|p| p.push(*c)),
        }
    }
    parts
}

/// A replica applying the partitions in the order `schedule` picks them.
fn replica(table: &InstrumentTable, parts: &[Vec<Command>], schedule: &[usize]) -> Engine {
    let mut e = Engine::new(table.clone(), config());
    let mut next = vec![0usize; parts.len()];
    let mut out = Vec::new();
    for &p in schedule.iter().cycle() {
        if next.iter().zip(parts).all(|(n, v)| *n >= v.len()) {
            break;
        }
        // Up to 97 commands of partition p, then the next turn.
        for _ in 0..97 {
            let Some(c) = parts[p].get(next[p]) else {
                break;
            };
            next[p] += 1;
            out.clear();
            e.apply_partition(c, &|s| part(s) as usize == p, &mut out);
        }
    }
    e
}

#[test]
fn partitions_replicate_in_any_interleaving() {
    let table = InstrumentTable::demo();
    let log = recorded(&table, 30_000);
    let parts = split(&log);
    assert!(parts.iter().all(|p| p.len() > 5_000));

    let mut single = Engine::new(table.clone(), config());
    let mut out = Vec::new();
    for c in &log {
        out.clear();
        single.apply(c, &mut out);
    }
    let a = replica(&table, &parts, &[0, 1]);
    let b = replica(&table, &parts, &[1, 1, 1, 0]);
    for p in 0..PARTITIONS {
        let keep = |s: SymbolId| part(s) == p;
        let want = single.symbols_state_hash(&keep);
        assert_eq!(
            a.symbols_state_hash(&keep),
            want,
            "partition {p}, replica a"
        );
        assert_eq!(
            b.symbols_state_hash(&keep),
            want,
            "partition {p}, replica b"
        );
    }
    // The hash covers the books: another partition's hash differs, and trades happened.
    let h0 = single.symbols_state_hash(&|s| part(s) == 0);
    assert_ne!(h0, single.symbols_state_hash(&|s| part(s) == 1));
    assert!(!single.recent_trades(SymbolId(0), 1).is_empty());
    assert!(!single.recent_trades(SymbolId(1), 1).is_empty());

    // Accounts (balances, positions, reservations) agree whatever the interleaving.
    for i in 0..50 {
        let id = account(i);
        assert_eq!(a.risk().account(&id), single.risk().account(&id), "{id}");
        assert_eq!(b.risk().account(&id), single.risk().account(&id), "{id}");
        assert_eq!(
            b.risk().positions(&id),
            single.risk().positions(&id),
            "{id}"
        );
    }
}

#[test]
fn an_accounts_risk_moves_to_another_instance_exactly() {
    let table = InstrumentTable::demo();
    let log = recorded(&table, 20_000);
    let mut replica = Engine::new(table.clone(), config());
    let mut out = Vec::new();
    for c in &log {
        out.clear();
        replica.apply(c, &mut out);
    }
    // A stale R1 instance (it followed only the first half) takes over the even accounts.
    let mut stale = Engine::new(table.clone(), config());
    for c in &log[..log.len() / 2] {
        out.clear();
        stale.apply(c, &mut out);
    }
    let mut r1 = stale.risk().clone();
    let even = |a: &oms_core::AccountId| (0..50).step_by(2).any(|i| account(i) == *a);
    let image = replica.risk().export_accounts(&even);
    assert_eq!(image.accounts(), 25);
    assert!(image.open_orders() > 0);
    r1.import_accounts(image);
    for i in 0..50 {
        let id = account(i);
        if i % 2 == 0 {
            assert_eq!(r1.account(&id), replica.risk().account(&id), "{id}");
            assert_eq!(r1.positions(&id), replica.risk().positions(&id), "{id}");
        } else {
            // Untouched, except that marks (and so unrealized PnL) are the image's newer ones.
            let key = |v: Option<oms_core::AccountView>| {
                v.map(|v| {
                    (
                        v.realized_pnl,
                        v.used_margin,
                        v.reserved_margin,
                        v.open_orders,
                    )
                })
            };
            let old = stale.risk().account(&id);
            assert_eq!(key(r1.account(&id)), key(old), "{id} untouched");
        }
    }
    // And it decides the next order of a moved account as the replica's own instance would.
    let mut reference = replica.risk().clone();
    for c in log.iter().rev().take(2_000) {
        if let Command::Place(p) = c
            && even(&p.account)
        {
            let fresh = oms_core::OrderId(p.order_id.0 ^ 1);
            assert_eq!(
                r1.check_place(&p.account, fresh, &p.order),
                reference.check_place(&p.account, fresh, &p.order)
            );
        }
    }
    // Halts travel too.
    let mut halted = replica.risk().clone();
    halted.set_halt(&HaltScope::Account(account(4)), true);
    r1.import_accounts(halted.export_accounts(&|a| *a == account(4)));
    assert!(r1.account(&account(4)).unwrap().halted);
}
