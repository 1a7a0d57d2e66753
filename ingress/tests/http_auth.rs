//! `--auth jwt` against the real binary: the account comes from `sub`, roles gate routes
//! (`/api/admin/*` needs `admin`, `readonly` cannot place or cancel), expired / not-yet-valid
//! / wrongly signed tokens are 401 with `WWW-Authenticate: Bearer`, weak secrets are refused
//! at start, RS256/ES256 keys come from a JWKS file, and dev mode warns.

use std::time::Duration;

use crate::common::*;
use reqwest::Method;
use serde_json::{Value, json};

const SECRET: &str = "oms-test-secret-0123456789abcdef-0123";

async fn jwt_server() -> Server {
    Server::start_with(&["--auth", "jwt", "--jwt-secret", SECRET]).await
}

fn bearer(claims: Value) -> String {
    format!("Bearer {}", jwt(&claims, SECRET))
}

fn token_for(sub: &str, roles: &[&str]) -> String {
    bearer(json!({"sub": sub, "roles": roles, "exp": unix_now() + 600}))
}

async fn call(s: &Server, method: Method, path: &str, auth: &str, body: Option<&Value>) -> Resp {
    let key = key("auth");
    s.send(
        method,
        path,
        Some("spoofed"),
        &[("Authorization", auth), ("X-Idempotency-Key", &key)],
        body,
    )
    .await
}

#[track_caller]
fn assert_challenge(r: &Resp, what: &str) {
    let h = r.header("www-authenticate").unwrap_or("");
    assert!(
        h.starts_with("Bearer"),
        "{what}: a 401 must carry WWW-Authenticate: Bearer, got {h:?}"
    );
}

#[tokio::test]
async fn roles_gate_trading_and_the_kill_switch() {
    let s = jwt_server().await;
    let trader = token_for("jwt-trader", &["trader"]);
    let admin = token_for("jwt-admin", &["admin"]);
    let readonly = token_for("jwt-reader", &["readonly"]);
    let halt = json!({"scope":"GLOBAL","halted":true});

    // A trader trades as its `sub`, never as X-Account-Id.
    let placed = call(
        &s,
        Method::POST,
        "/api/orders",
        &trader,
        Some(&seed_order()),
    )
    .await
    .expect(201, "trader places");
    assert_eq!(placed.json["account"], "jwt-trader");
    let id = placed.json["orderId"].as_str().unwrap().to_owned();

    // The kill switch: 403 for a trader, 200 for an admin.
    call(&s, Method::POST, "/api/admin/halt", &trader, Some(&halt))
        .await
        .expect_error(403, "FORBIDDEN", "trader halts the venue");
    call(&s, Method::POST, "/api/admin/halt", &readonly, Some(&halt))
        .await
        .expect_error(403, "FORBIDDEN", "readonly halts the venue");
    let r = call(&s, Method::POST, "/api/admin/halt", &admin, Some(&halt))
        .await
        .expect(200, "admin halts");
    assert_eq!(r.json["halted"], true);
    let lift = json!({"scope":"GLOBAL","halted":false});
    call(&s, Method::POST, "/api/admin/halt", &admin, Some(&lift))
        .await
        .expect(200, "admin lifts the halt");

    // readonly reads but cannot place, cancel or amend.
    call(
        &s,
        Method::POST,
        "/api/orders",
        &readonly,
        Some(&seed_order()),
    )
    .await
    .expect_error(403, "FORBIDDEN", "readonly places");
    call(
        &s,
        Method::DELETE,
        &format!("/api/orders/{id}"),
        &readonly,
        None,
    )
    .await
    .expect_error(403, "FORBIDDEN", "readonly cancels");
    call(
        &s,
        Method::PATCH,
        &format!("/api/orders/{id}"),
        &readonly,
        Some(&json!({"quantity":"0.2"})),
    )
    .await
    .expect_error(403, "FORBIDDEN", "readonly amends");
    let acct = call(&s, Method::GET, "/api/account", &readonly, None)
        .await
        .expect(200, "readonly reads its account");
    assert_eq!(acct.json["account"], "jwt-reader");

    // Accounts still see only their own orders.
    let list = call(&s, Method::GET, "/api/orders", &trader, None)
        .await
        .expect(200, "trader lists");
    assert_eq!(list.json["orders"].as_array().unwrap().len(), 1);
    call(
        &s,
        Method::GET,
        &format!("/api/orders/{id}"),
        &readonly,
        None,
    )
    .await
    .expect_error(404, "ORDER_NOT_FOUND", "another account's order");
    call(
        &s,
        Method::DELETE,
        &format!("/api/orders/{id}"),
        &trader,
        None,
    )
    .await
    .expect(200, "the trader cancels its own order");

    // The venue routes carry the same roles: readonly cannot cancel-all or batch, only an
    // admin reads the audit log, and the log names who halted the venue and with what role.
    call(&s, Method::DELETE, "/api/orders", &readonly, None)
        .await
        .expect_error(403, "FORBIDDEN", "readonly cancels all");
    call(
        &s,
        Method::POST,
        "/api/orders/batch",
        &readonly,
        Some(&json!({"orders":[seed_order()]})),
    )
    .await
    .expect_error(403, "FORBIDDEN", "readonly places a batch");
    call(&s, Method::GET, "/api/admin/audit", &trader, None)
        .await
        .expect_error(403, "FORBIDDEN", "trader reads the audit log");
    let audit = call(&s, Method::GET, "/api/admin/audit", &admin, None)
        .await
        .expect(200, "admin reads the audit log");
    let records = audit.json["records"].as_array().unwrap();
    let halts: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "POST /api/admin/halt")
        .collect();
    let done: Vec<&&Value> = halts.iter().filter(|r| r["status"] == 200).collect();
    assert_eq!(done.len(), 2, "both admin halts audited: {records:?}");
    assert!(
        done.iter()
            .all(|r| r["account"] == "jwt-admin" && r["role"] == "admin"),
        "{done:?}"
    );
    // The trader's and the readonly caller's halt attempts are audited as denied.
    let denied: Vec<(&str, &str)> = halts
        .iter()
        .filter(|r| r["status"] == 403 && r["code"] == "FORBIDDEN")
        .map(|r| (r["account"].as_str().unwrap(), r["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        denied,
        [("jwt-trader", "trader"), ("jwt-reader", "readonly")],
        "{records:?}"
    );

    // A token without any known role may not even read.
    let none = token_for("jwt-nobody", &["auditor"]);
    call(&s, Method::GET, "/api/account", &none, None)
        .await
        .expect_error(403, "FORBIDDEN", "no role");
    // Probes and public market data need no token.
    s.get("/health", None).await.expect(200, "health");
    s.get("/api/symbols", None).await.expect(200, "symbols");
    s.get("/api/book/BTC-USD", None).await.expect(200, "book");
}

#[tokio::test]
async fn invalid_tokens_are_401_with_a_bearer_challenge() {
    let s = jwt_server().await;
    let now = unix_now();
    let cases = [
        ("no token", None),
        ("not a JWT", Some("Bearer not.a.jwt".to_owned())),
        ("not Bearer", Some(format!("Basic {}", "dXNlcjpwYXNz"))),
        (
            "expired",
            Some(bearer(
                json!({"sub":"a","roles":["trader"],"exp": now - 3600}),
            )),
        ),
        (
            "not yet valid",
            Some(bearer(
                json!({"sub":"a","roles":["trader"],"exp": now + 7200,"nbf": now + 3600}),
            )),
        ),
        (
            "wrong signature",
            Some(format!(
                "Bearer {}",
                jwt(
                    &json!({"sub":"a","roles":["trader"],"exp": now + 600}),
                    "a-different-secret-that-is-long-enough!!"
                )
            )),
        ),
        (
            "no exp",
            Some(bearer(json!({"sub":"a","roles":["trader"]}))),
        ),
        (
            "bad sub",
            Some(bearer(
                json!({"sub":"not an account!","roles":["trader"],"exp": now + 600}),
            )),
        ),
    ];
    for (what, auth) in cases {
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        for (method, path) in [(Method::GET, "/api/account"), (Method::POST, "/api/orders")] {
            let mut h = headers.clone();
            h.push(("X-Idempotency-Key", "k-401"));
            let body = (method == Method::POST).then(seed_order);
            let r = s
                .send(method.clone(), path, Some("spoofed"), &h, body.as_ref())
                .await
                .expect_error(401, "UNAUTHORIZED", what);
            assert_challenge(&r, what);
        }
    }
    // Within the leeway (30 s by default) a just-expired token still works.
    let skewed = bearer(json!({"sub":"a","roles":["readonly"],"exp": now - 5}));
    call(&s, Method::GET, "/api/account", &skewed, None)
        .await
        .expect(200, "expired 5 s ago, inside the leeway");
}

#[tokio::test]
async fn issuer_and_audience_are_required_when_configured() {
    let s = Server::start_with(&[
        "--auth",
        "jwt",
        "--jwt-secret",
        SECRET,
        "--jwt-issuer",
        "https://idp.example",
        "--jwt-audience",
        "oms",
    ])
    .await;
    let exp = unix_now() + 600;
    let good = bearer(
        json!({"sub":"a","roles":["readonly"],"exp":exp,"iss":"https://idp.example","aud":"oms"}),
    );
    call(&s, Method::GET, "/api/account", &good, None)
        .await
        .expect(200, "right iss and aud");
    for (what, claims) in [
        (
            "no iss",
            json!({"sub":"a","roles":["readonly"],"exp":exp,"aud":"oms"}),
        ),
        (
            "wrong aud",
            json!({"sub":"a","roles":["readonly"],"exp":exp,"iss":"https://idp.example","aud":"x"}),
        ),
    ] {
        let r = call(&s, Method::GET, "/api/account", &bearer(claims), None)
            .await
            .expect_error(401, "UNAUTHORIZED", what);
        assert_challenge(&r, what);
    }
}

#[tokio::test]
async fn jwks_public_keys_are_accepted() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let jwks = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwks.json");
    let s = Server::start_with(&["--auth", "jwt", "--jwt-jwks", jwks]).await;
    let claims = json!({"sub":"jwks-acct","roles":["trader"],"exp": unix_now() + 600});
    let keys = [
        (
            Algorithm::ES256,
            "test-es256",
            EncodingKey::from_ec_der(include_bytes!("fixtures/es256-private.pk8.der")),
        ),
        (
            Algorithm::RS256,
            "test-rs256",
            EncodingKey::from_rsa_der(include_bytes!("fixtures/rs256-private.pkcs1.der")),
        ),
    ];
    for (alg, kid, key) in keys {
        let mut h = Header::new(alg);
        h.kid = Some(kid.into());
        let auth = format!("Bearer {}", encode(&h, &claims, &key).unwrap());
        let r = call(&s, Method::POST, "/api/orders", &auth, Some(&seed_order()))
            .await
            .expect(201, kid);
        assert_eq!(r.json["account"], "jwks-acct");
    }
    // With only public keys configured, an HS256 token is refused.
    let r = call(
        &s,
        Method::GET,
        "/api/account",
        &token_for("a", &["trader"]),
        None,
    )
    .await
    .expect_error(401, "UNAUTHORIZED", "HS256 without a secret");
    assert_challenge(&r, "HS256 without a secret");
}

/// Runs `oms serve` with `args` and expects it to exit non-zero, returning its stderr.
fn start_fails(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin())
        .arg("serve")
        .args(["--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(args)
        .env_remove("OMS_JWT_SECRET")
        .env_remove("OMS_AUTH")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run oms");
    assert!(
        !out.status.success(),
        "oms serve {args:?} must refuse to start"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn weak_or_missing_keys_are_refused_at_start() {
    let err = start_fails(&["--auth", "jwt", "--jwt-secret", "short-secret"]);
    assert!(err.contains("at least 32"), "{err}");
    let err = start_fails(&["--auth", "jwt"]);
    assert!(err.contains("--jwt-secret"), "{err}");
}

#[tokio::test]
async fn dev_mode_is_the_default_and_warns() {
    let s = Server::start().await;
    let r = s
        .place("dev-acct", &key("dev"), &seed_order())
        .await
        .expect(201, "auth off: X-Account-Id is the account");
    assert_eq!(r.json["account"], "dev-acct");
    // Dev mode grants every role, the kill switch included.
    s.halt(&json!({"scope":"ACCOUNT","account":"dev-acct","halted":false}))
        .await
        .expect(200, "halt in dev mode");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        s.log_text().contains("auth is off"),
        "dev mode must warn at start"
    );
}
