//! HTTP listeners: the operations endpoints (`/metrics`, `/healthz`, `/readyz`)
//! on their own listener, so exposing the REST shim never exposes metrics.

pub mod ops;
