//! Notifications (v1 and grouped v2), unread counts and markers.

use crate::{error::ApiResult, state::AppState};

/// The `Notification` entity of notification `id` of `account`, serialised, for the
/// streaming API; `None` when it no longer exists.
pub async fn render_notification(
    _state: &AppState,
    _account: i64,
    _id: i64,
) -> ApiResult<Option<String>> {
    Ok(None)
}
