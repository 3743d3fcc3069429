//! The tonic adapter: decode the request, call the service, map the error.

use std::sync::Arc;

use rookery_proto::notifications::v1::{self as pb, notifications_server};
use tonic::{Request, Response, Status};

use crate::service::Notifications;

/// gRPC face of [`Notifications`].
#[derive(Clone)]
pub struct NotificationsGrpc(pub Arc<Notifications>);

type Reply<T> = Result<Response<T>, Status>;

fn reply<T>(r: crate::Result<T>) -> Reply<T> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl notifications_server::Notifications for NotificationsGrpc {
    async fn list(&self, req: Request<pb::ListRequest>) -> Reply<pb::ListResponse> {
        reply(self.0.list(req.into_inner()).await)
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Reply<pb::Notification> {
        let req = req.into_inner();
        reply(self.0.get(req.account_id, req.id).await)
    }

    async fn dismiss(&self, req: Request<pb::GetRequest>) -> Reply<pb::Empty> {
        let req = req.into_inner();
        reply(
            self.0
                .dismiss(req.account_id, req.id)
                .await
                .map(|()| pb::Empty {}),
        )
    }

    async fn clear(&self, req: Request<pb::AccountRequest>) -> Reply<pb::Empty> {
        reply(
            self.0
                .clear(req.into_inner().account_id)
                .await
                .map(|()| pb::Empty {}),
        )
    }

    async fn unread_count(
        &self,
        req: Request<pb::UnreadCountRequest>,
    ) -> Reply<pb::UnreadCountResponse> {
        reply(
            self.0
                .unread_count(req.into_inner())
                .await
                .map(|count| pb::UnreadCountResponse { count }),
        )
    }

    async fn grouped(&self, req: Request<pb::GroupedRequest>) -> Reply<pb::GroupedResponse> {
        reply(self.0.grouped(req.into_inner()).await)
    }

    async fn get_group(&self, req: Request<pb::GroupRequest>) -> Reply<pb::Group> {
        let req = req.into_inner();
        reply(self.0.get_group(req.account_id, &req.group_key).await)
    }

    async fn dismiss_group(&self, req: Request<pb::GroupRequest>) -> Reply<pb::Empty> {
        let req = req.into_inner();
        reply(
            self.0
                .dismiss_group(req.account_id, &req.group_key)
                .await
                .map(|()| pb::Empty {}),
        )
    }

    async fn group_accounts(
        &self,
        req: Request<pb::GroupRequest>,
    ) -> Reply<pb::GroupAccountsResponse> {
        let req = req.into_inner();
        reply(
            self.0
                .group_accounts(req.account_id, &req.group_key)
                .await
                .map(|account_ids| pb::GroupAccountsResponse { account_ids }),
        )
    }

    async fn get_markers(&self, req: Request<pb::GetMarkersRequest>) -> Reply<pb::MarkersResponse> {
        let req = req.into_inner();
        reply(
            self.0
                .markers(req.account_id, &req.timelines)
                .await
                .map(|markers| pb::MarkersResponse { markers }),
        )
    }

    async fn set_markers(&self, req: Request<pb::SetMarkersRequest>) -> Reply<pb::MarkersResponse> {
        let req = req.into_inner();
        reply(
            self.0
                .set_markers(req.account_id, &req.markers)
                .await
                .map(|markers| pb::MarkersResponse { markers }),
        )
    }
}
