//! Who is calling and what they may do.
//!
//! `--auth jwt`: `Authorization: Bearer <JWT>` verified with `jsonwebtoken` — HS256 with a
//! shared secret (≥ 32 bytes, refused at start otherwise) or RS256/ES256 with the public keys
//! of a JWKS file (selected by the token's `kid`). `sub` is the account, `roles` the
//! permissions (`trader`, `admin`, `readonly`). `exp` is required and `nbf` honoured, both
//! against the injected clock with a configurable leeway; `iss` and `aud` are checked when
//! configured. Failures are 401 `UNAUTHORIZED` (the HTTP layer adds
//! `WWW-Authenticate: Bearer`); a valid token without the role a route needs is 403
//! `FORBIDDEN`.
//!
//! `--auth off` (the default, development only): the account is `X-Account-Id` (default
//! `demo`) and every role is granted.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context as _;
use http::HeaderMap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use oms_core::AccountId;
use oms_wire::ApiError;
use serde::Deserialize;

/// Shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;

/// A permission a token can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Place, cancel and amend orders; read.
    Trader,
    /// `/api/admin/*` (kill switch); read.
    Admin,
    /// Read only.
    ReadOnly,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Trader => "trader",
            Role::Admin => "admin",
            Role::ReadOnly => "readonly",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Role::Trader => 1,
            Role::Admin => 2,
            Role::ReadOnly => 4,
        }
    }

    fn parse(s: &str) -> Option<Role> {
        [Role::Trader, Role::Admin, Role::ReadOnly]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// The roles of a caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    pub const ALL: Roles = Roles(7);

    pub fn of(roles: &[Role]) -> Roles {
        Roles(roles.iter().fold(0, |acc, r| acc | r.bit()))
    }

    pub fn has(self, r: Role) -> bool {
        self.0 & r.bit() != 0
    }

    /// Any role at all (every role may read).
    pub fn any(self) -> bool {
        self.0 != 0
    }

    /// The roles as the audit log records them: `admin,trader`, `readonly`, `dev` (auth off:
    /// every role), or `none`.
    pub fn label(self) -> &'static str {
        const NAMES: [&str; 8] = [
            "none",
            "trader",
            "admin",
            "admin,trader",
            "readonly",
            "readonly,trader",
            "admin,readonly",
            "dev",
        ];
        NAMES[usize::from(self.0 & 7)]
    }
}

/// The authenticated caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Principal {
    pub account: AccountId,
    pub roles: Roles,
}

impl Principal {
    /// 403 unless the caller has `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.roles.has(role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this route needs the '{}' role",
                role.as_str()
            )))
        }
    }
}

/// JWT settings (`--auth jwt`).
#[derive(Clone, Debug, Default)]
pub struct JwtSettings {
    /// HS256 shared secret.
    pub secret: Option<String>,
    /// JWKS file with RS256/ES256 public keys.
    pub jwks: Option<std::path::PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_secs: u64,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    nbf: Option<u64>,
    #[serde(default)]
    roles: Vec<String>,
}

/// Verifies bearer tokens.
pub struct JwtVerifier {
    hs256: Option<DecodingKey>,
    /// Public keys by `kid` (and the only key under "" when the file has one without `kid`).
    public: HashMap<String, (DecodingKey, Algorithm)>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
}

impl JwtVerifier {
    /// Checks the settings (secret length, JWKS file) and loads the keys.
    pub fn new(s: &JwtSettings) -> anyhow::Result<JwtVerifier> {
        let hs256 = match s.secret.as_deref().filter(|s| !s.is_empty()) {
            Some(secret) if secret.len() < MIN_SECRET_BYTES => anyhow::bail!(
                "--jwt-secret is {} bytes; at least {MIN_SECRET_BYTES} are required \
                 (e.g. `openssl rand -base64 48`)",
                secret.len()
            ),
            Some(secret) => Some(DecodingKey::from_secret(secret.as_bytes())),
            None => None,
        };
        let public = match &s.jwks {
            Some(path) => load_jwks(path)?,
            None => HashMap::new(),
        };
        if hs256.is_none() && public.is_empty() {
            anyhow::bail!(
                "--auth jwt needs --jwt-secret (OMS_JWT_SECRET) or --jwt-jwks (OMS_JWT_JWKS)"
            );
        }
        Ok(JwtVerifier {
            hs256,
            public,
            issuer: s.issuer.clone(),
            audience: s.audience.clone(),
            leeway: s.leeway_secs,
        })
    }

    /// The principal of a valid token; `now` in seconds since the epoch.
    pub fn verify(&self, token: &str, now: u64) -> Result<Principal, ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| ApiError::unauthorized("malformed token"))?;
        let (key, alg) = match header.alg {
            Algorithm::HS256 => (
                self.hs256
                    .as_ref()
                    .ok_or_else(|| ApiError::unauthorized("HS256 tokens are not accepted"))?,
                Algorithm::HS256,
            ),
            Algorithm::RS256 | Algorithm::ES256 => {
                let kid = header.kid.as_deref().unwrap_or("");
                let (key, alg) = self
                    .public
                    .get(kid)
                    .ok_or_else(|| ApiError::unauthorized("unknown signing key (kid)"))?;
                if *alg != header.alg {
                    return Err(ApiError::unauthorized(
                        "the token's algorithm does not match its key",
                    ));
                }
                (key, *alg)
            }
            _ => {
                return Err(ApiError::unauthorized(
                    "only HS256, RS256 and ES256 tokens are accepted",
                ));
            }
        };
        let mut v = Validation::new(alg);
        // Time claims are checked below against the injected clock, not the library's.
        v.validate_exp = false;
        v.validate_nbf = false;
        v.required_spec_claims.clear();
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                v.required_spec_claims.insert("aud".into());
            }
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            v.required_spec_claims.insert("iss".into());
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            ApiError::unauthorized(match e.kind() {
                K::InvalidSignature => "bad token signature",
                K::InvalidIssuer => "wrong token issuer",
                K::InvalidAudience => "wrong token audience",
                K::MissingRequiredClaim(_) => "the token lacks a required claim",
                K::Json(_) => "malformed token claims (sub and exp are required)",
                _ => "invalid token",
            })
        })?;
        let c = data.claims;
        if c.exp.saturating_add(self.leeway) <= now {
            return Err(ApiError::unauthorized("token expired"));
        }
        if c.nbf
            .is_some_and(|nbf| nbf > now.saturating_add(self.leeway))
        {
            return Err(ApiError::unauthorized("token not yet valid"));
        }
        let account = AccountId::new(&c.sub)
            .map_err(|_| ApiError::unauthorized("token subject is not a valid account id"))?;
        let roles: Vec<Role> = c.roles.iter().filter_map(|r| Role::parse(r)).collect();
        Ok(Principal {
            account,
            roles: Roles::of(&roles),
        })
    }
}

fn load_jwks(path: &Path) -> anyhow::Result<HashMap<String, (DecodingKey, Algorithm)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the JWKS file {}", path.display()))?;
    let set: JwkSet = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JWKS document", path.display()))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        use jsonwebtoken::jwk::AlgorithmParameters as P;
        let alg = match &jwk.algorithm {
            P::RSA(_) => Algorithm::RS256,
            P::EllipticCurve(ec) if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => anyhow::bail!(
                "{}: only RSA (RS256) and P-256 (ES256) keys are supported",
                path.display()
            ),
        };
        let key = DecodingKey::from_jwk(jwk)
            .with_context(|| format!("{}: unusable key", path.display()))?;
        let kid = jwk.common.key_id.clone().unwrap_or_default();
        keys.insert(kid, (key, alg));
    }
    if keys.is_empty() {
        anyhow::bail!("{} holds no keys", path.display());
    }
    Ok(keys)
}

/// How callers are identified.
pub enum Authenticator {
    /// Development: `X-Account-Id`, every role.
    Off,
    Jwt(Box<JwtVerifier>),
}

impl Authenticator {
    /// The caller of a request, or 401.
    pub fn principal(&self, headers: &HeaderMap, now_secs: u64) -> Result<Principal, ApiError> {
        match self {
            Authenticator::Off => {
                let raw = headers
                    .get("x-account-id")
                    .map(|v| v.to_str().unwrap_or("\u{0}"))
                    .unwrap_or("demo");
                let account = AccountId::new(raw).map_err(|e| {
                    ApiError::bad_request("INVALID_ACCOUNT", format!("X-Account-Id {e}"))
                        .field("X-Account-Id")
                })?;
                Ok(Principal {
                    account,
                    roles: Roles::ALL,
                })
            }
            Authenticator::Jwt(v) => {
                let h = headers
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token"))?;
                let token = h
                    .strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
                    .ok_or_else(|| ApiError::unauthorized("expected a Bearer token"))?;
                v.verify(token.trim(), now_secs)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

    fn verifier(issuer: Option<&str>, audience: Option<&str>) -> JwtVerifier {
        JwtVerifier::new(&JwtSettings {
            secret: Some(SECRET.into()),
            issuer: issuer.map(str::to_owned),
            audience: audience.map(str::to_owned),
            leeway_secs: 5,
            ..Default::default()
        })
        .unwrap()
    }

    fn token(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn short_secrets_and_missing_keys_are_refused_at_start() {
        let short = JwtSettings {
            secret: Some("too-short".into()),
            ..Default::default()
        };
        assert!(JwtVerifier::new(&short).is_err());
        assert!(JwtVerifier::new(&JwtSettings::default()).is_err());
    }

    #[test]
    fn claims_are_checked_against_the_given_time() {
        let v = verifier(None, None);
        let ok = token(
            json!({"sub":"a-1","exp":2000,"roles":["trader","x"]}),
            SECRET,
        );
        let p = v.verify(&ok, 1000).unwrap();
        assert_eq!(p.account.as_str(), "a-1");
        assert!(p.roles.has(Role::Trader) && !p.roles.has(Role::Admin));
        // exp with leeway: 2000 + 5 is still fine at 2004, not at 2005.
        assert!(v.verify(&ok, 2004).is_ok());
        assert_eq!(v.verify(&ok, 2005).unwrap_err().message, "token expired");
        let nbf = token(json!({"sub":"a","exp":9000,"nbf":1000}), SECRET);
        assert_eq!(
            v.verify(&nbf, 900).unwrap_err().message,
            "token not yet valid"
        );
        assert!(v.verify(&nbf, 996).is_ok());
        let no_exp = token(json!({"sub":"a"}), SECRET);
        assert_eq!(v.verify(&no_exp, 0).unwrap_err().code, "UNAUTHORIZED");
        let other = token(
            json!({"sub":"a","exp":2000}),
            "another-secret-of-32-bytes-or-more!!",
        );
        assert_eq!(
            v.verify(&other, 1000).unwrap_err().message,
            "bad token signature"
        );
    }

    #[test]
    fn issuer_and_audience_are_enforced_when_configured() {
        let v = verifier(Some("oms-idp"), Some("oms"));
        let good = token(
            json!({"sub":"a","exp":2000,"iss":"oms-idp","aud":"oms"}),
            SECRET,
        );
        assert!(v.verify(&good, 1000).is_ok());
        let bad_iss = token(
            json!({"sub":"a","exp":2000,"iss":"evil","aud":"oms"}),
            SECRET,
        );
        assert!(v.verify(&bad_iss, 1000).is_err());
        let no_aud = token(json!({"sub":"a","exp":2000,"iss":"oms-idp"}), SECRET);
        assert!(v.verify(&no_aud, 1000).is_err());
    }

    #[test]
    fn roles_gate_routes() {
        let p = Principal {
            account: AccountId::new("a").unwrap(),
            roles: Roles::of(&[Role::ReadOnly]),
        };
        assert_eq!(p.require(Role::Trader).unwrap_err().status, 403);
        assert!(p.roles.any());
        assert!(!Roles::default().any());
    }

    #[test]
    fn jwks_public_keys_verify_rs256_and_es256() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let v = JwtVerifier::new(&JwtSettings {
            jwks: Some(format!("{dir}/jwks.json").into()),
            ..Default::default()
        })
        .unwrap();
        let claims = json!({"sub":"a-9","exp":2000,"roles":["readonly"]});
        let sign = |alg, kid: &str, key: EncodingKey| {
            let mut h = Header::new(alg);
            h.kid = Some(kid.into());
            encode(&h, &claims, &key).unwrap()
        };
        let es =
            EncodingKey::from_ec_der(include_bytes!("../tests/fixtures/es256-private.pk8.der"));
        let rs =
            EncodingKey::from_rsa_der(include_bytes!("../tests/fixtures/rs256-private.pkcs1.der"));
        for t in [
            sign(Algorithm::ES256, "test-es256", es.clone()),
            sign(Algorithm::RS256, "test-rs256", rs),
        ] {
            let p = v.verify(&t, 1000).unwrap();
            assert_eq!(p.account.as_str(), "a-9");
            assert!(p.roles.has(Role::ReadOnly));
        }
        // A key under another kid, or an HS256 token when no secret is configured: 401.
        assert!(
            v.verify(&sign(Algorithm::ES256, "test-rs256", es), 1000)
                .is_err()
        );
        assert!(v.verify(&token(claims.clone(), SECRET), 1000).is_err());
    }
}
