//! Builders shared by the archive tests.

use oms_archive::{ArchivedOrder, OrderArchive};
use oms_core::{AccountId, ClientOrderId, OrderId, OrderStatus, SymbolId};
use tempfile::TempDir;

pub fn account(s: &str) -> AccountId {
    AccountId::new(s).expect("valid account id")
}

pub fn cid(s: &str) -> ClientOrderId {
    ClientOrderId::new(s).expect("valid client order id")
}

/// A finished order whose JSON names its id, so a mixed-up row is visible in the bytes.
pub fn order(
    acct: &str,
    id: u128,
    created_at: u64,
    symbol: u16,
    status: OrderStatus,
    client_id: Option<&str>,
) -> ArchivedOrder {
    let order_id = OrderId(id);
    let json = format!(
        r#"{{"orderId":"{order_id}","account":"{acct}","symbol":{symbol},"status":"{}","createdAt":{created_at},"price":"101.25","quantity":"3"}}"#,
        status.as_str()
    );
    ArchivedOrder {
        order_id,
        account: account(acct),
        client_order_id: client_id.map(cid),
        symbol: SymbolId(symbol),
        status,
        created_at,
        json: json.into_bytes(),
    }
}

/// A fresh archive in its own temporary directory (kept alive by the returned guard).
pub fn fresh() -> (TempDir, OrderArchive) {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = OrderArchive::open(&dir.path().join("archive.redb")).expect("open archive");
    (dir, archive)
}

/// The `(created_at, order_id)` list key of an order.
pub fn key(o: &ArchivedOrder) -> (u64, OrderId) {
    (o.created_at, o.order_id)
}
