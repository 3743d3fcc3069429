//! The tonic adapter: decode the request, call the service, map the error.

use std::sync::Arc;

use rookery_proto::timeline::v1::{self as pb, timeline_server};
use tonic::{Request, Response, Status};

use crate::service::Timeline;

/// gRPC face of [`Timeline`].
#[derive(Clone)]
pub struct TimelineGrpc(pub Arc<Timeline>);

type Reply<T> = Result<Response<T>, Status>;

fn reply<T>(r: crate::Result<T>) -> Reply<T> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl timeline_server::Timeline for TimelineGrpc {
    async fn create_status(&self, req: Request<pb::CreateStatusRequest>) -> Reply<pb::StatusPage> {
        reply(self.0.create_status(req.into_inner()).await)
    }

    async fn edit_status(&self, req: Request<pb::EditStatusRequest>) -> Reply<pb::StatusPage> {
        reply(self.0.edit_status(req.into_inner()).await)
    }

    async fn delete_status(&self, req: Request<pb::StatusRequest>) -> Reply<pb::StatusPage> {
        reply(self.0.delete_status(req.into_inner()).await)
    }

    async fn get_statuses(&self, req: Request<pb::GetStatusesRequest>) -> Reply<pb::StatusPage> {
        reply(self.0.get_statuses(req.into_inner()).await)
    }

    async fn context(&self, req: Request<pb::StatusRequest>) -> Reply<pb::ContextResponse> {
        reply(self.0.context(req.into_inner()).await)
    }

    async fn history(&self, req: Request<pb::StatusRequest>) -> Reply<pb::HistoryResponse> {
        reply(self.0.history(req.into_inner()).await)
    }

    async fn interact(&self, req: Request<pb::InteractRequest>) -> Reply<pb::StatusPage> {
        reply(self.0.interact(req.into_inner()).await)
    }

    async fn interactions(&self, req: Request<pb::InteractionsRequest>) -> Reply<pb::IdPage> {
        reply(self.0.interactions(req.into_inner()).await)
    }

    async fn saved_statuses(
        &self,
        req: Request<pb::SavedStatusesRequest>,
    ) -> Reply<pb::StatusPage> {
        reply(self.0.saved(req.into_inner()).await)
    }

    async fn home_timeline(&self, req: Request<pb::HomeTimelineRequest>) -> Reply<pb::StatusPage> {
        reply(self.0.home(req.into_inner()).await)
    }

    async fn public_timeline(
        &self,
        req: Request<pb::PublicTimelineRequest>,
    ) -> Reply<pb::StatusPage> {
        reply(self.0.public(req.into_inner()).await)
    }

    async fn tag_timeline(&self, req: Request<pb::TagTimelineRequest>) -> Reply<pb::StatusPage> {
        reply(self.0.tag_timeline(req.into_inner()).await)
    }

    async fn account_statuses(
        &self,
        req: Request<pb::AccountStatusesRequest>,
    ) -> Reply<pb::StatusPage> {
        reply(self.0.account_statuses(req.into_inner()).await)
    }

    async fn get_tag(&self, req: Request<pb::TagRequest>) -> Reply<pb::Tag> {
        reply(self.0.get_tag(req.into_inner()).await)
    }

    async fn follow_tag(&self, req: Request<pb::TagRequest>) -> Reply<pb::Tag> {
        reply(self.0.follow_tag(req.into_inner(), true).await)
    }

    async fn unfollow_tag(&self, req: Request<pb::TagRequest>) -> Reply<pb::Tag> {
        reply(self.0.follow_tag(req.into_inner(), false).await)
    }

    async fn followed_tags(&self, req: Request<pb::FollowedTagsRequest>) -> Reply<pb::TagPage> {
        reply(self.0.followed_tags(req.into_inner()).await)
    }

    async fn trending_tags(&self, req: Request<pb::TrendsRequest>) -> Reply<pb::TagPage> {
        reply(self.0.trending_tags(req.into_inner()).await)
    }

    async fn trending_statuses(&self, req: Request<pb::TrendsRequest>) -> Reply<pb::StatusPage> {
        reply(self.0.trending_statuses(req.into_inner()).await)
    }

    async fn search(&self, req: Request<pb::SearchRequest>) -> Reply<pb::SearchResponse> {
        reply(self.0.search(req.into_inner()).await)
    }
}
