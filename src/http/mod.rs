//! HTTP listeners: the operations endpoints (`/metrics`, `/healthz`, `/readyz`)
//! on their own listener, so exposing the REST shim never exposes metrics; and
//! the REST shim for FreeRADIUS `rlm_rest` ([`shim`]). Both run the accept loop
//! of [`listener`], with its timeouts and caps on connections and requests.

pub mod listener;
pub mod ops;
pub mod shim;
