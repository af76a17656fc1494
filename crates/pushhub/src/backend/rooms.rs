//! Who may join a room: the app decides (MSwoole put users in rooms by a code its own
//! controllers checked). Three policies: anyone connected (`open`), the rooms the
//! client's credential lists (`credential`: a token's `rooms` claim, an auth webhook's
//! `rooms`; `"*"` there means any), or the backend asked per join (`webhook`).

use serde::Serialize;

use super::call::{Question, Verdict};

/// How an app decides joins.
#[derive(Debug, Clone)]
pub enum RoomPolicy {
    /// Any connected client may join any room.
    Open,
    /// A client may join the rooms its credential lists.
    Credential,
    /// The backend is asked, per join.
    Webhook(Question),
}

/// Who wants to join, as the backend is told.
#[derive(Debug, Serialize)]
pub struct JoinRequest<'a> {
    /// The app.
    pub app: &'a str,
    /// The user, as authenticated.
    pub user: &'a str,
    /// The connection (a `welcome`'s `conn`).
    pub conn: &'a str,
    /// The room it asks to join.
    pub room: &'a str,
    /// What the credential said about the user, when anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<&'a serde_json::Value>,
}

/// Why a join was refused; the `code` of the error frame tells them apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefused {
    /// The policy says no (the credential does not list the room; the backend said 403).
    #[error("{0}")]
    Forbidden(String),
    /// The backend could not decide: down, slow, or an unexpected answer. Retry later.
    #[error("{0}")]
    Unavailable(String),
}

impl JoinRefused {
    /// The `code` of the error frame.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Forbidden(_) => "join_forbidden",
            Self::Unavailable(_) => "join_unavailable",
        }
    }
}

impl RoomPolicy {
    /// Whether `request`'s client, whose credential lists `granted` rooms, may join.
    pub async fn may_join(
        &self,
        request: &JoinRequest<'_>,
        granted: &[String],
    ) -> Result<(), JoinRefused> {
        match self {
            Self::Open => Ok(()),
            Self::Credential if granted.iter().any(|r| r == request.room || r == "*") => Ok(()),
            Self::Credential => Err(JoinRefused::Forbidden(format!(
                "your credential does not list room {:?}",
                request.room
            ))),
            Self::Webhook(question) => match question.ask(request).await {
                Ok(Verdict::Yes) => Ok(()),
                Ok(Verdict::No(why)) => Err(JoinRefused::Forbidden(why.unwrap_or_else(|| {
                    format!("the backend does not let you join room {:?}", request.room)
                }))),
                Err(why) => Err(JoinRefused::Unavailable(why)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(room: &str) -> JoinRequest<'_> {
        JoinRequest {
            app: "a",
            user: "1",
            conn: "1",
            room,
            info: None,
        }
    }

    #[tokio::test]
    async fn credential_policy_takes_listed_rooms_or_any() {
        let policy = RoomPolicy::Credential;
        let granted = ["r1".to_owned()];
        assert!(policy.may_join(&request("r1"), &granted).await.is_ok());
        assert_eq!(
            policy
                .may_join(&request("r2"), &granted)
                .await
                .unwrap_err()
                .code(),
            "join_forbidden"
        );
        assert!(policy.may_join(&request("r2"), &["*".into()]).await.is_ok());
        assert!(RoomPolicy::Open.may_join(&request("x"), &[]).await.is_ok());
    }
}
