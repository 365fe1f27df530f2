//! What the command line and the management API (`http::api`) both do to
//! plans, vouchers and NAS entries: checking what is asked for, generating
//! vouchers, and how each is shown. Both call these functions, so a rule or
//! a figure is the same whichever way it is reached.

pub mod nas;
pub mod plans;
pub mod tokens;
pub mod vouchers;

/// A request field (a CLI flag, a JSON body field) whose value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FieldError {
    /// The field in the API's snake_case (`rate_limit`); the CLI flag is
    /// the same name in kebab-case.
    pub field: String,
    /// What is wrong, naming the CLI flag as the CLI prints it.
    pub message: String,
}

impl FieldError {
    /// The error for the flag `--flag` (kebab-case, as the CLI spells it).
    pub fn flag(flag: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            field: flag.replace('-', "_"),
            message: message.into(),
        }
    }
}

/// The tenant a command or API request works in, and whether it was named
/// (a listing then shows only that tenant; otherwise every tenant).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope {
    pub id: i64,
    /// Whether the tenant was named (`--tenant`, a tenant's API token).
    pub given: bool,
}

impl Scope {
    /// Whether a listing shows something of `tenant_id`.
    pub fn shows(&self, tenant_id: i64) -> bool {
        !self.given || tenant_id == self.id
    }

    /// The tenant of a new voucher of `plan`: the plan's, which must be the
    /// named one when a tenant was named.
    pub fn voucher_tenant(
        &self,
        plan: &crate::model::Plan,
    ) -> Result<i64, crate::store::StoreError> {
        if self.given && plan.tenant_id != self.id {
            return Err(crate::store::StoreError::Invalid(format!(
                "plan {} belongs to another tenant",
                plan.name
            )));
        }
        Ok(plan.tenant_id)
    }
}
