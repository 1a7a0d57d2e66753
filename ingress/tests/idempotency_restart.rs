//! Idempotency answers across restarts (issue 11): a retry gets the byte-identical first
//! answer — for an accepted order, a risk-rejected one (422) and one that has since finished
//! and moved to the archive — whether the answer is read back from the on-disk answer store
//! or re-rendered from the order log after the store was lost.

use crate::common;

use common::*;
use reqwest::Method;

const ACCT: &str = "idem-r";
const ARGS: &[&str] = &[
    "--retain-terminal-orders",
    "2",
    "--default-equity",
    "100000",
];

/// One answered request: what was sent and the exact bytes that came back.
struct Answer {
    account: String,
    key: String,
    body: serde_json::Value,
    status: u16,
    text: String,
}

async fn answered(s: &Server, account: &str, key: &str, body: serde_json::Value) -> Answer {
    let r = s.place(account, key, &body).await;
    assert!(
        r.status == 201 || r.status == 422,
        "{key}: {} {}",
        r.status,
        r.text
    );
    Answer {
        account: account.to_owned(),
        key: key.to_owned(),
        body,
        status: r.status,
        text: r.text,
    }
}

async fn retries_match(s: &Server, answers: &[Answer], when: &str) {
    for a in answers {
        let r = s.place(&a.account, &a.key, &a.body).await;
        assert_eq!(r.status, a.status, "{when}: status of {}", a.key);
        assert_eq!(
            r.header("idempotent-replayed"),
            Some("true"),
            "{when}: {} must replay",
            a.key
        );
        assert_eq!(r.text, a.text, "{when}: the bytes of {}", a.key);
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn retries_after_restarts_get_the_byte_identical_first_answer() {
    let mut s = Server::start_with(ARGS).await;
    let mut answers = Vec::new();
    // Three crossing pairs: six orders that fill at once; with 2 finished orders retained,
    // at least four leave memory for the archive.
    for i in 0..3 {
        let px = format!("{}.00", 45_000 + i);
        answers.push(
            answered(
                &s,
                ACCT,
                &format!("buy-{i}"),
                limit("BTC/USD", "BUY", "0.01", &px),
            )
            .await,
        );
        answers.push(
            answered(
                &s,
                "idem-r-seller",
                &format!("sell-{i}"),
                limit("BTC/USD", "SELL", "0.01", &px),
            )
            .await,
        );
    }
    // A resting order, then margin exhaustion: 10 BTC @ 44000 reserves 44,000 of 100,000.
    for k in ["big-1", "big-2", "big-3"] {
        answers.push(
            answered(
                &s,
                "idem-r-big",
                k,
                limit("BTC/USD", "BUY", "10", "44000.00"),
            )
            .await,
        );
    }
    let rejected = answers.last().unwrap();
    assert_eq!(rejected.status, 422, "{}", rejected.text);
    assert!(
        rejected.text.contains("INSUFFICIENT_MARGIN"),
        "{}",
        rejected.text
    );
    // Wait until the fills are applied and the finished orders archived.
    let mut archived = 0.0;
    for _ in 0..200 {
        let m = s.get("/metrics", None).await.expect(200, "metrics").text;
        archived = metric(&m, "oms_orders_archived_total");
        if archived >= 4.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(archived >= 4.0, "finished orders archived: {archived}");
    retries_match(&s, &answers, "before any restart").await;

    // Graceful stop: snapshot with no tail; the answers come from the answer store.
    let pid = s.pid();
    // SAFETY: kill(2) on the pid of our own child, not yet reaped.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }, 0);
    for _ in 0..500 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z ") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    s.restart_with(ARGS).await;
    retries_match(&s, &answers, "after SIGTERM and restart").await;

    // A crash, and the answer store lost with it: every answer is rendered again from the
    // order log (no snapshot covers these commands, so the whole log is the tail).
    s.kill9();
    let snapshots = s.data_dir().join("snapshots");
    for e in std::fs::read_dir(&snapshots).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    std::fs::remove_dir_all(s.data_dir().join("answers")).unwrap();
    s.restart_with(ARGS).await;
    let log = s.log_text();
    assert!(
        log.contains(&format!("\"answers_rendered\":{}", answers.len())),
        "all {} answers re-rendered from the log: {}",
        answers.len(),
        log.lines()
            .rev()
            .find(|l| l.contains("recovered"))
            .unwrap_or("")
    );
    retries_match(&s, &answers, "after re-rendering from the log").await;

    // A different body under a used key is still refused after all this.
    let r = s
        .send(
            Method::POST,
            "/api/orders",
            Some(ACCT),
            &[("X-Idempotency-Key", "buy-0")],
            Some(&limit("BTC/USD", "BUY", "0.02", "45000.00")),
        )
        .await;
    r.expect_error(422, "IDEMPOTENCY_KEY_REUSED", "changed body");
}
