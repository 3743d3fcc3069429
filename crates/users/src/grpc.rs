//! The tonic adapter: decode the request, call the service, map the error. A few lines
//! per RPC; the rules live in [`crate::service`].

use std::{pin::Pin, sync::Arc};

use futures::Stream;

use rookery_proto::users::v1::{self as pb, users_server};
use tonic::{Request, Response, Status};

use crate::{service::Users, store::graph::Followers};

/// gRPC face of [`Users`].
#[derive(Clone)]
pub struct UsersGrpc(pub Arc<Users>);

type Reply<T> = Result<Response<T>, Status>;

/// Most ids one batch call may carry.
const MAX_BATCH: usize = 1000;

fn check_batch(ids: &[i64]) -> Result<(), Status> {
    if ids.len() > MAX_BATCH {
        return Err(Status::invalid_argument(format!(
            "at most {MAX_BATCH} ids per call"
        )));
    }
    Ok(())
}

fn reply<T>(r: crate::Result<T>) -> Reply<T> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl users_server::Users for UsersGrpc {
    type FollowerIdsStream =
        Pin<Box<dyn Stream<Item = Result<pb::FollowerIdsChunk, Status>> + Send + 'static>>;

    async fn create_app(&self, req: Request<pb::CreateAppRequest>) -> Reply<pb::App> {
        reply(self.0.create_app(req.into_inner()).await)
    }

    async fn get_app(&self, req: Request<pb::GetAppRequest>) -> Reply<pb::App> {
        reply(self.0.get_app(&req.into_inner().client_id).await)
    }

    async fn issue_token(
        &self,
        req: Request<pb::IssueTokenRequest>,
    ) -> Reply<pb::IssueTokenResponse> {
        reply(self.0.issue_token(req.into_inner()).await)
    }

    async fn create_authorization_code(
        &self,
        req: Request<pb::CreateAuthorizationCodeRequest>,
    ) -> Reply<pb::CreateAuthorizationCodeResponse> {
        reply(self.0.create_authorization_code(req.into_inner()).await)
    }

    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Reply<pb::RevokeTokenResponse> {
        reply(self.0.revoke_token(req.into_inner()).await)
    }

    async fn authenticate(
        &self,
        req: Request<pb::AuthenticateRequest>,
    ) -> Reply<pb::Authentication> {
        reply(self.0.authenticate(&req.into_inner().access_token).await)
    }

    async fn register(&self, req: Request<pb::RegisterRequest>) -> Reply<pb::RegisterResponse> {
        reply(self.0.register(req.into_inner()).await)
    }

    async fn get_accounts(
        &self,
        req: Request<pb::GetAccountsRequest>,
    ) -> Reply<pb::GetAccountsResponse> {
        let ids = req.into_inner().ids;
        check_batch(&ids)?;
        reply(
            self.0
                .get_accounts(&ids)
                .await
                .map(|accounts| pb::GetAccountsResponse { accounts }),
        )
    }

    async fn lookup_account(&self, req: Request<pb::LookupAccountRequest>) -> Reply<pb::Account> {
        reply(self.0.lookup_account(&req.into_inner().acct).await)
    }

    async fn update_credentials(
        &self,
        req: Request<pb::UpdateCredentialsRequest>,
    ) -> Reply<pb::UpdateCredentialsResponse> {
        reply(self.0.update_credentials(req.into_inner()).await)
    }

    async fn get_instance_stats(
        &self,
        _req: Request<pb::GetInstanceStatsRequest>,
    ) -> Reply<pb::InstanceStats> {
        reply(self.0.instance_stats().await)
    }

    async fn follow(&self, req: Request<pb::FollowRequest>) -> Reply<pb::Relationship> {
        let (relationship, decision) = self.0.follow(req.into_inner()).await?;
        let mut response = Response::new(relationship);
        // Where the caller stands against the follow limit (the gateway's X-RateLimit-*).
        if let Some(d) = decision {
            let metadata = response.metadata_mut();
            metadata.insert("x-ratelimit-limit", d.limit.into());
            metadata.insert("x-ratelimit-remaining", d.remaining.into());
            metadata.insert("x-ratelimit-reset", d.reset_at.into());
        }
        Ok(response)
    }

    async fn unfollow(&self, req: Request<pb::PairRequest>) -> Reply<pb::Relationship> {
        reply(self.0.unfollow(req.into_inner()).await)
    }

    async fn remove_from_followers(
        &self,
        req: Request<pb::PairRequest>,
    ) -> Reply<pb::Relationship> {
        reply(self.0.remove_from_followers(req.into_inner()).await)
    }

    async fn authorize_follow_request(
        &self,
        req: Request<pb::PairRequest>,
    ) -> Reply<pb::Relationship> {
        reply(self.0.authorize_follow_request(req.into_inner()).await)
    }

    async fn reject_follow_request(
        &self,
        req: Request<pb::PairRequest>,
    ) -> Reply<pb::Relationship> {
        reply(self.0.reject_follow_request(req.into_inner()).await)
    }

    async fn block(&self, req: Request<pb::PairRequest>) -> Reply<pb::Relationship> {
        reply(self.0.block(req.into_inner()).await)
    }

    async fn unblock(&self, req: Request<pb::PairRequest>) -> Reply<pb::Relationship> {
        reply(self.0.unblock(req.into_inner()).await)
    }

    async fn mute(&self, req: Request<pb::MuteRequest>) -> Reply<pb::Relationship> {
        reply(self.0.mute(req.into_inner()).await)
    }

    async fn unmute(&self, req: Request<pb::PairRequest>) -> Reply<pb::Relationship> {
        reply(self.0.unmute(req.into_inner()).await)
    }

    async fn relationships(
        &self,
        req: Request<pb::RelationshipsRequest>,
    ) -> Reply<pb::RelationshipsResponse> {
        let req = req.into_inner();
        check_batch(&req.ids)?;
        reply(
            self.0
                .relationships(req.viewer_id, &req.ids)
                .await
                .map(|relationships| pb::RelationshipsResponse { relationships }),
        )
    }

    async fn list_accounts(&self, req: Request<pb::ListAccountsRequest>) -> Reply<pb::AccountPage> {
        reply(self.0.list_accounts(req.into_inner()).await)
    }

    async fn search_accounts(
        &self,
        req: Request<pb::SearchAccountsRequest>,
    ) -> Reply<pb::GetAccountsResponse> {
        reply(
            self.0
                .search_accounts(req.into_inner())
                .await
                .map(|accounts| pb::GetAccountsResponse { accounts }),
        )
    }

    /// Followers, or with `following` the accounts followed. Chunks are read one query at
    /// a time as the caller consumes them, so a slow consumer holds no database connection.
    async fn follower_ids(
        &self,
        req: Request<pb::FollowerIdsRequest>,
    ) -> Reply<Self::FollowerIdsStream> {
        let req = req.into_inner();
        let followers = if req.notify_only {
            Followers::Notified
        } else if req.reblogs_only {
            Followers::ShowingReblogs
        } else {
            Followers::All
        };
        let users = self.0.clone();
        let stream = futures::stream::unfold(Some(0), move |after| {
            let users = users.clone();
            async move {
                let after = after?;
                let chunk = if req.following {
                    users.following_ids_chunk(req.account_id, after).await
                } else {
                    users
                        .follower_ids_chunk(req.account_id, req.only_active, followers, after)
                        .await
                };
                match chunk {
                    Ok((ids, _)) if ids.is_empty() => None,
                    Ok((ids, next)) => Some((Ok(pb::FollowerIdsChunk { ids }), next)),
                    Err(e) => Some((Err(Status::from(e)), None)),
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn filter_accounts(
        &self,
        req: Request<pb::FilterAccountsRequest>,
    ) -> Reply<pb::FilterAccountsResponse> {
        let req = req.into_inner();
        check_batch(&req.ids)?;
        reply(self.0.filter_accounts(req.viewer_id, &req.ids).await)
    }

    async fn lookup_accounts(
        &self,
        req: Request<pb::LookupAccountsRequest>,
    ) -> Reply<pb::GetAccountsResponse> {
        reply(
            self.0
                .lookup_accounts(&req.into_inner().usernames)
                .await
                .map(|accounts| pb::GetAccountsResponse { accounts }),
        )
    }

    async fn exclusions(
        &self,
        req: Request<pb::ExclusionsRequest>,
    ) -> Reply<pb::FilterAccountsResponse> {
        reply(self.0.exclusions(req.into_inner().account_id).await)
    }
}
