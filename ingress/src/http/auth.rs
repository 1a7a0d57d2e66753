//! `--auth jwt`: `Authorization: Bearer <JWT>` signed with HS256; the `sub` claim is the
//! account. `exp` (seconds since the epoch) is enforced when present.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::Request;
use hyper::body::Incoming;
use oms_core::AccountId;
use serde::Deserialize;
use sha2::Sha256;

use super::error::ApiError;

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: Option<u64>,
}

fn unauthorized(msg: &str) -> ApiError {
    ApiError::new(401, "UNAUTHORIZED", msg.to_owned()).field("Authorization")
}

/// The account of a request carrying a valid token.
pub fn account_from_jwt(req: &Request<Incoming>, secret: &[u8]) -> Result<AccountId, ApiError> {
    let h = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthorized("missing Authorization: Bearer token"))?;
    let token = h
        .strip_prefix("Bearer ")
        .ok_or_else(|| unauthorized("expected a Bearer token"))?;
    verify(token, secret, now_secs())
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Verifies an HS256 token and returns its `sub` as an account.
pub fn verify(token: &str, secret: &[u8], now: u64) -> Result<AccountId, ApiError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unauthorized("malformed token"));
    };
    let decode = |s: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| unauthorized("malformed token"))
    };
    let header: Header =
        serde_json::from_slice(&decode(h)?).map_err(|_| unauthorized("malformed token header"))?;
    if header.alg != "HS256" {
        return Err(unauthorized("only HS256 tokens are accepted"));
    }
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret).map_err(|_| unauthorized("server key unusable"))?;
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    mac.verify_slice(&decode(sig)?)
        .map_err(|_| unauthorized("bad token signature"))?;
    let claims: Claims =
        serde_json::from_slice(&decode(p)?).map_err(|_| unauthorized("malformed token claims"))?;
    if claims.exp.is_some_and(|exp| exp <= now) {
        return Err(unauthorized("token expired"));
    }
    AccountId::new(&claims.sub).map_err(|_| unauthorized("token subject is not a valid account id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(claims: &str, secret: &[u8]) -> String {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let p = URL_SAFE_NO_PAD.encode(claims.as_bytes());
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{h}.{p}").as_bytes());
        let s = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{h}.{p}.{s}")
    }

    #[test]
    fn valid_tokens_name_the_account_and_bad_ones_are_refused() {
        let t = sign(r#"{"sub":"acct-7","exp":2000}"#, b"k");
        assert_eq!(verify(&t, b"k", 1000).unwrap().as_str(), "acct-7");
        assert_eq!(verify(&t, b"other", 1000).unwrap_err().code, "UNAUTHORIZED");
        assert_eq!(verify(&t, b"k", 3000).unwrap_err().message, "token expired");
        assert!(verify("a.b", b"k", 0).is_err());
    }
}
