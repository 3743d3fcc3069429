//! The tonic adapter: decode the request, call the service, map the error. A few lines
//! per RPC; the rules live in [`crate::service`].

use std::sync::Arc;

use rookery_proto::users::v1::{self as pb, users_server};
use tonic::{Request, Response, Status};

use crate::service::Users;

/// gRPC face of [`Users`].
#[derive(Clone)]
pub struct UsersGrpc(pub Arc<Users>);

type Reply<T> = Result<Response<T>, Status>;

fn reply<T>(r: crate::Result<T>) -> Reply<T> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl users_server::Users for UsersGrpc {
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
        if ids.len() > 1000 {
            return Err(Status::invalid_argument("at most 1000 ids per call"));
        }
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
}
