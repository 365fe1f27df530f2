//! `/api/v1/events?after=CURSOR`: the events the webhooks are sent, for an
//! ERP that polls instead (`crate::events::page`). `next` is the cursor to ask
//! with next time; asking again with it continues with no gap and no repeat.

use axum::extract::State;
use axum::{Extension, Json};

use super::body::Params;
use super::{scope, ApiState, Caller, Problem};
use crate::events::{self, EventsPage, DEFAULT_PAGE, MAX_PAGE};
use crate::store::StoreError;

pub async fn list(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> Result<Json<EventsPage>, Problem> {
    params.only(&["tenant", "after", "limit"])?;
    let scope = scope(&s, &caller, &params).await?;
    let limit = params.limit(DEFAULT_PAGE as usize, MAX_PAGE as usize)? as u32;
    let tenant = scope.given.then_some(scope.id);
    let page = events::page(&*s.store, tenant, params.get("after"), limit)
        .await
        .map_err(|e| match e {
            // Only the cursor can be invalid here.
            StoreError::Invalid(why) => Problem::field("after", why),
            e => Problem::from(e),
        })?;
    Ok(Json(page))
}
