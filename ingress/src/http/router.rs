//! The route table: path patterns (matchit), the method → route map, and what each route
//! needs (a role, a rate-limit bucket). Handlers never check these themselves: the layers in
//! `layers.rs` enforce them from here.

use http::Method;
use oms_wire::ApiError;

use super::limits::Bucket;
use crate::auth::Role;
use crate::metrics::Route;

/// What a route requires of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No credentials: probes, metrics, the OpenAPI document, public market data.
    Public,
    /// Any authenticated caller (every role may read its own data).
    Read,
    /// A caller with this role.
    Role(Role),
}

/// A matched route and its requirements.
#[derive(Clone, Copy, Debug)]
pub struct RouteInfo {
    pub route: Route,
    pub access: Access,
    pub bucket: Option<Bucket>,
}

struct Entry {
    methods: Vec<(Method, RouteInfo)>,
    allow: &'static str,
}

const fn r(route: Route, access: Access, bucket: Option<Bucket>) -> RouteInfo {
    RouteInfo {
        route,
        access,
        bucket,
    }
}

const TRADE: Access = Access::Role(Role::Trader);
const ORDERS: Option<Bucket> = Some(Bucket::Orders);
const QUERIES: Option<Bucket> = Some(Bucket::Queries);

/// The routes of docs/api.md.
pub struct Router {
    inner: matchit::Router<Entry>,
}

impl Router {
    pub fn new() -> Router {
        let mut m = matchit::Router::new();
        let mut add = |path: &str, methods: Vec<(Method, RouteInfo)>, allow| {
            m.insert(path, Entry { methods, allow })
                .expect("route patterns are distinct");
        };
        add(
            "/api/orders",
            vec![
                (Method::POST, r(Route::PlaceOrder, TRADE, ORDERS)),
                (Method::GET, r(Route::ListOrders, Access::Read, QUERIES)),
                (Method::DELETE, r(Route::CancelAll, TRADE, ORDERS)),
            ],
            "GET, POST, DELETE",
        );
        // Literal segments win over `{id}` in matchit, so these never reach the order routes.
        add(
            "/api/orders/batch",
            vec![
                (Method::POST, r(Route::BatchPlace, TRADE, ORDERS)),
                (Method::DELETE, r(Route::BatchCancel, TRADE, ORDERS)),
            ],
            "POST, DELETE",
        );
        add(
            "/api/orders/cancel-all-after",
            vec![(Method::POST, r(Route::CancelAllAfter, TRADE, ORDERS))],
            "POST",
        );
        add(
            "/api/orders/by-client-id/{client_order_id}",
            vec![
                (Method::GET, r(Route::GetByClientId, Access::Read, QUERIES)),
                (Method::DELETE, r(Route::CancelByClientId, TRADE, ORDERS)),
            ],
            "GET, DELETE",
        );
        add(
            "/api/admin/audit",
            vec![(
                Method::GET,
                r(Route::Audit, Access::Role(Role::Admin), QUERIES),
            )],
            "GET",
        );
        add(
            "/api/orders/{id}",
            vec![
                (Method::GET, r(Route::GetOrder, Access::Read, QUERIES)),
                (Method::DELETE, r(Route::CancelOrder, TRADE, ORDERS)),
                (Method::PATCH, r(Route::AmendOrder, TRADE, ORDERS)),
            ],
            "GET, DELETE, PATCH",
        );
        add(
            "/api/cluster",
            vec![(Method::GET, r(Route::Cluster, Access::Read, QUERIES))],
            "GET",
        );
        add(
            "/api/positions",
            vec![(Method::GET, r(Route::Positions, Access::Read, QUERIES))],
            "GET",
        );
        add(
            "/api/account",
            vec![(Method::GET, r(Route::Account, Access::Read, QUERIES))],
            "GET",
        );
        add(
            "/api/symbols",
            vec![(Method::GET, r(Route::Symbols, Access::Public, None))],
            "GET",
        );
        add(
            "/api/book/{symbol}",
            vec![(Method::GET, r(Route::Book, Access::Public, None))],
            "GET",
        );
        add(
            "/api/trades/{symbol}",
            vec![(Method::GET, r(Route::Trades, Access::Public, None))],
            "GET",
        );
        add(
            "/api/candles/{symbol}",
            vec![(Method::GET, r(Route::Candles, Access::Public, None))],
            "GET",
        );
        add(
            "/api/admin/halt",
            vec![(
                Method::POST,
                r(Route::Halt, Access::Role(Role::Admin), ORDERS),
            )],
            "POST",
        );
        add(
            "/health",
            vec![(Method::GET, r(Route::Health, Access::Public, None))],
            "GET",
        );
        add(
            "/ready",
            vec![(Method::GET, r(Route::Ready, Access::Public, None))],
            "GET",
        );
        add(
            "/metrics",
            vec![(Method::GET, r(Route::Metrics, Access::Public, None))],
            "GET",
        );
        add(
            "/openapi.json",
            vec![(Method::GET, r(Route::OpenApi, Access::Public, None))],
            "GET",
        );
        Router { inner: m }
    }

    /// The route of a request, or 404 / 405 (with `Allow`).
    pub fn route(&self, method: &Method, path: &str) -> Result<RouteInfo, ApiError> {
        let path = match path.strip_suffix('/') {
            Some(p) if !p.is_empty() => p,
            _ => path,
        };
        let m = self.inner.at(path).map_err(|_| ApiError::not_found())?;
        m.value
            .methods
            .iter()
            .find(|(verb, _)| verb == method)
            .map(|(_, info)| *info)
            .ok_or_else(|| ApiError::method_not_allowed(m.value.allow))
    }
}

impl Default for Router {
    fn default() -> Self {
        Router::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_methods_and_policies() {
        let r = Router::new();
        let place = r.route(&Method::POST, "/api/orders").unwrap();
        assert_eq!(place.route, Route::PlaceOrder);
        assert_eq!(place.access, Access::Role(Role::Trader));
        assert_eq!(
            r.route(&Method::GET, "/api/orders/").unwrap().route,
            Route::ListOrders
        );
        assert_eq!(
            r.route(&Method::DELETE, "/api/orders/abc").unwrap().route,
            Route::CancelOrder
        );
        let halt = r.route(&Method::POST, "/api/admin/halt").unwrap();
        assert_eq!(halt.access, Access::Role(Role::Admin));
        let audit = r.route(&Method::GET, "/api/admin/audit").unwrap();
        assert_eq!(audit.access, Access::Role(Role::Admin));
        assert_eq!(
            r.route(&Method::POST, "/api/orders/batch").unwrap().route,
            Route::BatchPlace
        );
        assert_eq!(
            r.route(&Method::DELETE, "/api/orders").unwrap().route,
            Route::CancelAll
        );
        let by_cid = r
            .route(&Method::DELETE, "/api/orders/by-client-id/c-1")
            .unwrap();
        assert_eq!(
            (by_cid.route, by_cid.access),
            (Route::CancelByClientId, Access::Role(Role::Trader))
        );
        let e = r.route(&Method::PUT, "/api/orders/x").unwrap_err();
        assert_eq!((e.status, e.allow), (405, Some("GET, DELETE, PATCH")));
        assert_eq!(r.route(&Method::GET, "/nope").unwrap_err().status, 404);
        assert_eq!(r.route(&Method::GET, "/").unwrap_err().status, 404);
        assert_eq!(
            r.route(&Method::GET, "/api/orders/a/b").unwrap_err().status,
            404
        );
    }
}
