//! HTTP listeners: the operations endpoints (`/metrics`, `/healthz`, `/readyz`)
//! on their own listener, so exposing the REST shim never exposes metrics; and
//! the REST shim for FreeRADIUS `rlm_rest` ([`shim`]).

pub mod ops;
pub mod shim;
