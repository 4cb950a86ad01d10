//! The `[gateway]` settings: which gateway serves each session.
//!
//! `default` serves every session not named under `sessions`. The Wasend/WAHA gateway is the default, so
//! settings written before there was a choice keep working unchanged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::domain::Gateway;
use crate::domain::SessionName;
use crate::settings::Problems;

/// Which gateway serves each session.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Choice {
    /// The gateway of every session not listed in `sessions`.
    pub default: Gateway,
    /// Sessions served by another gateway than the default: `[gateway.sessions]` `sales = "wasend"`.
    pub sessions: BTreeMap<String, Gateway>,
}

impl Choice {
    /// The gateway that serves `session`.
    pub fn of(&self, session: &SessionName) -> Gateway {
        self.sessions
            .get(session.as_str())
            .copied()
            .unwrap_or(self.default)
    }

    /// The gateway of `session` if it is `route`, else why not.
    pub fn check(&self, session: &SessionName, route: Gateway) -> Result<(), super::Refused> {
        let configured = self.of(session);
        if configured == route {
            Ok(())
        } else {
            Err(super::Refused::WrongGateway {
                session: session.clone(),
                configured,
                route,
            })
        }
    }

    pub(crate) fn check_choice(&self, out: &mut Problems) {
        for name in self.sessions.keys() {
            if let Err(e) = SessionName::parse(name) {
                out.bad(
                    &format!("gateway.sessions.{name}"),
                    format!("names a session that {e}"),
                );
            }
        }
    }
}
