//! The rules of the users service, written against the store and the caches; no
//! transport types beyond the protobuf messages the service returns. Accounts and OAuth
//! are here; the social graph is in [`graph`].

mod graph;

use std::{collections::HashMap, sync::Arc, time::Duration};

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use rookery_kit::{
    cache::{CacheHub, TieredCache, names},
    events::{self, Event, Outbox},
    ratelimit::RateLimit,
};
use rookery_proto::{timeline::v1 as timeline, users::v1 as pb};

use crate::{
    Error, Result,
    domain::{self, AccountId, AppId, Email, FieldError, Password, Scopes, Username},
    hashing::Hasher,
    store::{AccountChanges, AppRow, NewAccount, NewToken, Store, TokenRow},
};

/// Lifetime of an authorization code.
const CODE_TTL_SECONDS: i64 = 600;

/// Topics this service publishes.
pub mod topics {
    /// An account was registered; payload `AccountEvent`.
    pub const ACCOUNT_CREATED: &str = "account.created";
    /// An account's public data changed; payload `AccountEvent`.
    pub const ACCOUNT_UPDATED: &str = "account.updated";
    /// Payload `GraphEvent` (a follow).
    pub const FOLLOW_CREATED: &str = "follow.created";
    /// Payload `GraphEvent` (new options of an existing follow).
    pub const FOLLOW_UPDATED: &str = "follow.updated";
    /// Payload `GraphEvent` (the follow removed).
    pub const FOLLOW_DELETED: &str = "follow.deleted";
    /// Payload `GraphEvent` (a follow request).
    pub const FOLLOW_REQUEST_CREATED: &str = "follow_request.created";
    /// Payload `GraphEvent` (the request withdrawn, rejected, accepted or severed by a
    /// block; an accepted one is followed by `follow.created`).
    pub const FOLLOW_REQUEST_DELETED: &str = "follow_request.deleted";
    /// Payload `GraphEvent` (a block).
    pub const BLOCK_CREATED: &str = "block.created";
    /// Payload `GraphEvent` (the block removed).
    pub const BLOCK_DELETED: &str = "block.deleted";
    /// Payload `GraphEvent` (a mute, new or changed).
    pub const MUTE_CREATED: &str = "mute.created";
    /// Payload `GraphEvent` (the mute removed).
    pub const MUTE_DELETED: &str = "mute.deleted";
}

/// Topics of other services that this service consumes.
pub mod consumed {
    /// On stream `events:timeline`; payload `rookery.timeline.v1.StatusEvent`.
    pub const STATUS_CREATED: &str = "status.created";
    /// On stream `events:timeline`; payload `rookery.timeline.v1.StatusEvent`.
    pub const STATUS_DELETED: &str = "status.deleted";
}

/// The producer whose stream the statuses counter follows.
pub const TIMELINE_PRODUCER: &str = "timeline";
/// The consumer group of this service on other services' streams.
pub const CONSUMER_GROUP: &str = "users";
/// Deduplication key (`processed_events.consumer`) of the statuses counter.
const STATUSES_COUNT_CONSUMER: &str = "users.statuses_count";

/// Most usernames one `LookupAccounts` call may carry.
pub const MAX_LOOKUP: usize = 100;

/// The Mastodon-style "has already been taken" error of `field`.
pub fn taken(field: &'static str) -> FieldError {
    FieldError {
        field,
        code: "ERR_TAKEN",
        description: "has already been taken".to_owned(),
    }
}

fn oauth_error(error: &str, description: &str) -> pb::OAuthError {
    pb::OAuthError {
        error: error.to_owned(),
        description: description.to_owned(),
    }
}

const INVALID_GRANT: &str = "The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client.";
const INVALID_CLIENT: &str = "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method.";

fn invalid_grant() -> pb::OAuthError {
    oauth_error("invalid_grant", INVALID_GRANT)
}

fn invalid_client() -> pb::OAuthError {
    oauth_error("invalid_client", INVALID_CLIENT)
}

fn validation(errors: Vec<FieldError>) -> pb::ValidationErrors {
    pb::ValidationErrors {
        errors: errors
            .into_iter()
            .map(|e| pb::FieldError {
                field: e.field.to_owned(),
                code: e.code.to_owned(),
                description: e.description,
            })
            .collect(),
    }
}

/// The parts the service runs on.
pub struct Parts {
    pub store: Store,
    pub accounts: TieredCache<pb::Account>,
    pub hub: Arc<CacheHub>,
    pub outbox: Outbox,
    /// New follows and follow requests per account.
    pub follow_limit: RateLimit,
    /// Failed logins per username or email.
    pub login_limit: RateLimit,
    /// The instance's domain (`user@domain` lookups and searches).
    pub domain: String,
    /// How recently a follower must have been active to be fanned out to.
    pub active_window: Duration,
    /// Password hashing threads.
    pub hasher: Hasher,
}

/// The users service.
pub struct Users {
    store: Store,
    accounts: TieredCache<pb::Account>,
    hub: Arc<CacheHub>,
    outbox: Outbox,
    follow_limit: RateLimit,
    login_limit: RateLimit,
    domain: String,
    active_window: Duration,
    /// A real hash to verify against when the login is unknown, so that the response time
    /// does not tell which usernames exist.
    decoy_hash: String,
    /// Accounts whose activity this process recorded lately.
    recently_active: moka::future::Cache<i64, ()>,
    /// Where passwords are hashed and verified.
    hasher: Hasher,
}

/// How long this process skips recording an account's activity again.
const ACTIVITY_RECHECK: Duration = Duration::from_secs(600);

impl Users {
    /// Wires the service.
    pub fn new(parts: Parts) -> Result<Self> {
        let decoy_hash = hash_password_blocking("decoy password for unknown logins")?;
        Ok(Self {
            store: parts.store,
            accounts: parts.accounts,
            hub: parts.hub,
            outbox: parts.outbox,
            follow_limit: parts.follow_limit,
            login_limit: parts.login_limit,
            domain: parts.domain,
            active_window: parts.active_window,
            decoy_hash,
            recently_active: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ACTIVITY_RECHECK)
                .build(),
            hasher: parts.hasher,
        })
    }

    #[tracing::instrument(skip_all, fields(name = %req.name))]
    pub async fn create_app(&self, req: pb::CreateAppRequest) -> Result<pb::App> {
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > 60 {
            return Err(Error::InvalidArgument(
                "client_name must be 1 to 60 characters".into(),
            ));
        }
        if req.redirect_uris.is_empty() {
            return Err(Error::InvalidArgument(
                "redirect_uris can't be blank".into(),
            ));
        }
        for uri in &req.redirect_uris {
            let valid = uri == "urn:ietf:wg:oauth:2.0:oob"
                || url::Url::parse(uri).is_ok_and(|u| {
                    u.fragment().is_none() && u.has_host()
                        || u.scheme() != "http" && u.scheme() != "https"
                });
            if !valid {
                return Err(Error::InvalidArgument(format!(
                    "redirect_uris: {uri:?} is not a valid URI"
                )));
            }
        }
        let scopes = Scopes::parse(&req.scopes, "read")
            .map_err(|e| Error::InvalidArgument(format!("scopes: {e}")))?;
        // Found by schemathesis: any text was stored and shown back as the app's website
        // (a URI in the API). An http(s) URL with a host or nothing, as Mastodon checks;
        // stored as parsed (non-ASCII percent-encoded), so it reads back as a valid URI.
        let website = match req.website.trim() {
            "" => String::new(),
            raw => match url::Url::parse(raw) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => u.into(),
                _ => {
                    return Err(Error::InvalidArgument(
                        "Validation failed: Website is invalid".into(),
                    ));
                }
            },
        };
        let client_id = domain::new_secret();
        let client_secret = domain::new_secret();
        let row = self
            .store
            .create_app(
                name,
                &website,
                &req.redirect_uris,
                &scopes.to_string(),
                &client_id,
                &domain::secret_hash(&client_secret),
            )
            .await?;
        let mut app = app_proto(row);
        app.client_secret = client_secret;
        Ok(app)
    }

    pub async fn get_app(&self, client_id: &str) -> Result<pb::App> {
        let row = self
            .store
            .app_by_client_id(client_id)
            .await?
            .ok_or(Error::NotFound("application"))?;
        Ok(app_proto(row))
    }

    /// The app for `client_id` if `client_secret` is its secret.
    async fn authenticate_client(
        &self,
        client_id: &str,
        client_secret: &str,
    ) -> Result<Option<AppRow>> {
        let Some(app) = self.store.app_by_client_id(client_id).await? else {
            return Ok(None);
        };
        let given = domain::secret_hash(client_secret);
        Ok(constant_time_eq(&given, &app.client_secret_hash).then_some(app))
    }

    #[tracing::instrument(skip_all)]
    pub async fn issue_token(&self, req: pb::IssueTokenRequest) -> Result<pb::IssueTokenResponse> {
        use pb::issue_token_request::Grant;
        let result = match self
            .authenticate_client(&req.client_id, &req.client_secret)
            .await?
        {
            None => Err(invalid_client()),
            Some(app) => match req.grant {
                None => Err(oauth_error(
                    "unsupported_grant_type",
                    "The authorization grant type is not supported by the authorization server.",
                )),
                Some(Grant::ClientCredentials(_)) => {
                    self.grant(&app, None, &req.scopes, &app.scopes, false)
                        .await?
                }
                Some(Grant::Password(p)) => {
                    match self.check_password(&p.username, &p.password).await? {
                        None => Err(invalid_grant()),
                        Some(account) => {
                            self.grant(&app, Some(account), &req.scopes, &app.scopes, true)
                                .await?
                        }
                    }
                }
                Some(Grant::AuthorizationCode(c)) => {
                    self.exchange_code(&app, c, &req.scopes).await?
                }
                Some(Grant::RefreshToken(r)) => {
                    self.refresh(&app, &r.refresh_token, &req.scopes).await?
                }
            },
        };
        Ok(pb::IssueTokenResponse {
            result: Some(match result {
                Ok(token) => pb::issue_token_response::Result::Token(token),
                Err(e) => pb::issue_token_response::Result::Error(e),
            }),
        })
    }

    /// Issues a token for `app` (and `account`), with `requested` scopes (default
    /// `granted`), which must be within both what was granted and the app's scopes.
    async fn grant(
        &self,
        app: &AppRow,
        account: Option<AccountId>,
        requested: &str,
        granted: &str,
        with_refresh: bool,
    ) -> Result<Result<pb::IssuedToken, pb::OAuthError>> {
        let (Ok(scopes), Ok(granted), Ok(app_scopes)) = (
            Scopes::parse(requested, granted),
            Scopes::parse(granted, "read"),
            Scopes::parse(&app.scopes, "read"),
        ) else {
            return Ok(Err(oauth_error(
                "invalid_scope",
                "The requested scope is invalid, unknown, or malformed.",
            )));
        };
        if !scopes.is_subset_of(&granted) || !scopes.is_subset_of(&app_scopes) {
            return Ok(Err(oauth_error(
                "invalid_scope",
                "The requested scope is invalid, unknown, or malformed.",
            )));
        }
        let mut tx = self.store.begin().await?;
        let token = self
            .insert_token(&mut tx, AppId(app.id), account, &scopes, with_refresh)
            .await?;
        tx.commit().await?;
        if let Some(account) = account {
            self.store.touch_active(account).await?;
        }
        Ok(Ok(token))
    }

    async fn insert_token(
        &self,
        conn: &mut sqlx::PgConnection,
        app: AppId,
        account: Option<AccountId>,
        scopes: &Scopes,
        with_refresh: bool,
    ) -> Result<pb::IssuedToken> {
        let access = domain::new_secret();
        let refresh = with_refresh.then(domain::new_secret);
        let access_hash = domain::secret_hash(&access);
        let refresh_hash = refresh.as_deref().map(domain::secret_hash);
        let scopes = scopes.to_string();
        let (_, created_at) = self
            .store
            .insert_token(
                conn,
                &NewToken {
                    app_id: app,
                    account_id: account,
                    token_hash: &access_hash,
                    refresh_hash: refresh_hash.as_deref(),
                    scopes: &scopes,
                },
            )
            .await?;
        Ok(pb::IssuedToken {
            access_token: access,
            refresh_token: refresh.unwrap_or_default(),
            scopes,
            created_at_ms: created_at.timestamp_millis(),
            account_id: account.map(|a| a.0),
        })
    }

    async fn exchange_code(
        &self,
        app: &AppRow,
        grant: pb::AuthorizationCodeGrant,
        requested: &str,
    ) -> Result<Result<pb::IssuedToken, pb::OAuthError>> {
        let mut tx = self.store.begin().await?;
        let Some(code) = self
            .store
            .take_code(&mut tx, AppId(app.id), &domain::secret_hash(&grant.code))
            .await?
        else {
            return Ok(Err(invalid_grant()));
        };
        if code.redirect_uri != grant.redirect_uri {
            return Ok(Err(invalid_grant()));
        }
        if let Some(challenge) = &code.code_challenge
            && !domain::pkce_matches(&grant.code_verifier, challenge)
        {
            return Ok(Err(invalid_grant()));
        }
        let scopes = match Scopes::parse(requested, &code.scopes) {
            Ok(s) if Scopes::parse(&code.scopes, "read").is_ok_and(|g| s.is_subset_of(&g)) => s,
            _ => {
                return Ok(Err(oauth_error(
                    "invalid_scope",
                    "The requested scope is invalid, unknown, or malformed.",
                )));
            }
        };
        let account = AccountId(code.account_id);
        let token = self
            .insert_token(&mut tx, AppId(app.id), Some(account), &scopes, true)
            .await?;
        tx.commit().await?;
        Ok(Ok(token))
    }

    async fn refresh(
        &self,
        app: &AppRow,
        refresh_token: &str,
        requested: &str,
    ) -> Result<Result<pb::IssuedToken, pb::OAuthError>> {
        let mut tx = self.store.begin().await?;
        let Some(old) = self
            .store
            .revoke_token(
                &mut tx,
                AppId(app.id),
                &domain::secret_hash(refresh_token),
                true,
            )
            .await?
        else {
            return Ok(Err(invalid_grant()));
        };
        let scopes = match Scopes::parse(requested, &old.scopes) {
            Ok(s) if Scopes::parse(&old.scopes, "read").is_ok_and(|g| s.is_subset_of(&g)) => s,
            _ => {
                return Ok(Err(oauth_error(
                    "invalid_scope",
                    "The requested scope is invalid, unknown, or malformed.",
                )));
            }
        };
        let token = self
            .insert_token(
                &mut tx,
                AppId(app.id),
                old.account_id.map(AccountId),
                &scopes,
                true,
            )
            .await?;
        tx.commit().await?;
        // Rotation: the old access token stops working everywhere at once.
        self.broadcast_revoked(&old).await;
        Ok(Ok(token))
    }

    /// The account whose login (username or email) and password match. Failed attempts
    /// per login are limited (password guessing spread over many addresses, which the
    /// gateway's per-address limit cannot see); over the limit, not even the right
    /// password is checked until the window ends.
    async fn check_password(&self, login: &str, password: &str) -> Result<Option<AccountId>> {
        let subject = login.trim().to_lowercase();
        let mut attempt = match self.login_limit.hit(&subject).await {
            Ok(d) if !d.allowed => {
                return Err(Error::RateLimited {
                    limit: d.limit,
                    reset_at: d.reset_at,
                });
            }
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!(error = %e, "login rate limit unavailable, allowing");
                None
            }
        };
        let found = self.check_password_unlimited(login, password).await?;
        // Only failures count: a successful login gives its attempt back.
        if found.is_some()
            && let Some(d) = &mut attempt
            && let Err(e) = self.login_limit.undo(&subject, d).await
        {
            tracing::warn!(error = %e, "login rate limit not given back");
        }
        Ok(found)
    }

    async fn check_password_unlimited(
        &self,
        login: &str,
        password: &str,
    ) -> Result<Option<AccountId>> {
        let found = self.store.login(login.trim()).await?;
        let (account, hash) = match &found {
            Some((id, hash)) => (Some(*id), hash.clone()),
            None => (None, self.decoy_hash.clone()),
        };
        let password = password.to_owned();
        let ok = self
            .hasher
            .run(move || verify_password(&password, &hash))
            .await?;
        Ok(account.filter(|_| ok))
    }

    #[tracing::instrument(skip_all)]
    pub async fn create_authorization_code(
        &self,
        req: pb::CreateAuthorizationCodeRequest,
    ) -> Result<pb::CreateAuthorizationCodeResponse> {
        use pb::create_authorization_code_response::Result as R;
        let respond = |r| Ok(pb::CreateAuthorizationCodeResponse { result: Some(r) });
        let Some(app) = self.store.app_by_client_id(&req.client_id).await? else {
            return respond(R::Error(invalid_client()));
        };
        if !app.redirect_uris.iter().any(|u| u == &req.redirect_uri) {
            return respond(R::Error(oauth_error(
                "invalid_request",
                "The redirect uri included is not valid.",
            )));
        }
        let scopes = match Scopes::parse(&req.scopes, &app.scopes) {
            Ok(s) if Scopes::parse(&app.scopes, "read").is_ok_and(|a| s.is_subset_of(&a)) => s,
            _ => {
                return respond(R::Error(oauth_error(
                    "invalid_scope",
                    "The requested scope is invalid, unknown, or malformed.",
                )));
            }
        };
        let challenge = match (
            req.code_challenge.as_str(),
            req.code_challenge_method.as_str(),
        ) {
            ("", _) => None,
            (c, "S256") => Some(c.to_owned()),
            _ => {
                return respond(R::Error(oauth_error(
                    "invalid_request",
                    "Only the S256 code challenge method is supported.",
                )));
            }
        };
        let Some(account) = self.check_password(&req.username, &req.password).await? else {
            return respond(R::Error(oauth_error(
                "access_denied",
                "Invalid username or password.",
            )));
        };
        let code = domain::new_secret();
        self.store
            .insert_code(
                &domain::secret_hash(&code),
                AppId(app.id),
                account,
                &req.redirect_uri,
                &scopes.to_string(),
                challenge.as_deref(),
                CODE_TTL_SECONDS,
            )
            .await?;
        self.store.touch_active(account).await?;
        respond(R::Code(code))
    }

    /// RFC 7009 revocation. Unknown tokens succeed silently; wrong client credentials do not.
    #[tracing::instrument(skip_all)]
    pub async fn revoke_token(
        &self,
        req: pb::RevokeTokenRequest,
    ) -> Result<pb::RevokeTokenResponse> {
        let Some(app) = self
            .authenticate_client(&req.client_id, &req.client_secret)
            .await?
        else {
            return Ok(pb::RevokeTokenResponse { client_ok: false });
        };
        let mut tx = self.store.begin().await?;
        let revoked = self
            .store
            .revoke_token(
                &mut tx,
                AppId(app.id),
                &domain::secret_hash(&req.token),
                false,
            )
            .await?;
        tx.commit().await?;
        if let Some(token) = revoked {
            self.broadcast_revoked(&token).await;
        }
        Ok(pb::RevokeTokenResponse { client_ok: true })
    }

    /// Every replica's cached resolution of the token is dropped now, not at its TTL.
    async fn broadcast_revoked(&self, token: &TokenRow) {
        self.hub
            .broadcast(names::TOKENS, &[domain::token_key(&token.token_hash)])
            .await;
    }

    pub async fn authenticate(&self, access_token: &str) -> Result<pb::Authentication> {
        let hash = domain::secret_hash(access_token);
        let token = self
            .store
            .token_by_hash(&hash)
            .await?
            .ok_or(Error::Unauthenticated)?;
        if let Some(account) = token.account_id
            && !self.recently_active.contains_key(&account)
        {
            // Token use is activity (fan-out skips inactive followers). Recorded off the
            // request path, and at most once per account per ACTIVITY_RECHECK in this
            // process: callers re-resolve tokens every minute or so, the column only
            // needs hour precision.
            self.recently_active.insert(account, ()).await;
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.touch_active(AccountId(account)).await {
                    tracing::debug!(error = %e, "activity not recorded");
                }
            });
        }
        Ok(pb::Authentication {
            token_id: token.id,
            app_id: token.app_id,
            account_id: token.account_id,
            scopes: token.scopes,
            token_key: domain::token_key(&hash),
        })
    }

    #[tracing::instrument(skip_all, fields(username = %req.username))]
    pub async fn register(&self, req: pb::RegisterRequest) -> Result<pb::RegisterResponse> {
        use pb::register_response::Result as R;
        let mut errors = Vec::new();
        let username = Username::parse(&req.username)
            .map_err(|e| errors.push(e))
            .ok();
        let email = Email::parse(&req.email).map_err(|e| errors.push(e)).ok();
        let password = Password::parse(&req.password)
            .map_err(|e| errors.push(e))
            .ok();
        if !req.agreement {
            errors.push(FieldError {
                field: "agreement",
                code: "ERR_ACCEPTED",
                description: "must be accepted".to_owned(),
            });
        }
        if let (Some(u), Some(e)) = (&username, &email) {
            let (user_taken, email_taken) = self.store.taken(u.as_str(), e.as_str()).await?;
            if user_taken {
                errors.push(taken("username"));
            }
            if email_taken {
                errors.push(taken("email"));
            }
        }
        let (Some(username), Some(email), Some(password), true) =
            (username, email, password, errors.is_empty())
        else {
            return Ok(pb::RegisterResponse {
                result: Some(R::Invalid(validation(errors))),
            });
        };
        let app = self
            .store
            .app_by_id(AppId(req.app_id))
            .await?
            .ok_or(Error::Unauthenticated)?;
        let scopes = Scopes::parse(&req.scopes, &app.scopes).map_err(Error::InvalidArgument)?;
        let secret = password.expose().to_owned();
        let password_hash = self
            .hasher
            .run(move || hash_password_blocking(&secret))
            .await??;
        let locale = if req.locale.trim().is_empty() {
            "en"
        } else {
            req.locale.trim()
        };

        let mut tx = self.store.begin().await?;
        let new = NewAccount {
            username: username.as_str(),
            email: email.as_str(),
            password_hash: &password_hash,
            locale,
        };
        let account = match self.store.insert_account(&mut tx, &new).await? {
            Ok(row) => pb::Account::from(row),
            Err(field) => {
                return Ok(pb::RegisterResponse {
                    result: Some(R::Invalid(validation(vec![field]))),
                });
            }
        };
        let token = self
            .insert_token(
                &mut tx,
                AppId(app.id),
                Some(AccountId(account.id)),
                &scopes,
                true,
            )
            .await?;
        self.publish(&mut tx, topics::ACCOUNT_CREATED, &account)
            .await?;
        tx.commit().await?;
        self.outbox.committed();
        tracing::info!(account_id = account.id, "account registered");
        Ok(pb::RegisterResponse {
            result: Some(R::Token(token)),
        })
    }

    async fn publish(
        &self,
        tx: &mut sqlx::PgConnection,
        topic: &str,
        account: &pb::Account,
    ) -> Result<()> {
        let event = pb::AccountEvent {
            account: Some(account.clone()),
        };
        self.enqueue(tx, topic, account.id, &event).await
    }

    /// Adds an event to the outbox in the caller's transaction.
    async fn enqueue(
        &self,
        tx: &mut sqlx::PgConnection,
        topic: &str,
        aggregate: i64,
        event: &impl prost::Message,
    ) -> Result<()> {
        self.outbox
            .enqueue(tx, topic, Some(aggregate), &event.encode_to_vec())
            .await?;
        Ok(())
    }

    /// Accounts by id through the two-tier cache: one L2 round trip and at most one
    /// query for any number of ids. Order follows `ids`; unknown ids are left out.
    #[tracing::instrument(skip_all, fields(count = ids.len()))]
    pub async fn get_accounts(&self, ids: &[i64]) -> Result<Vec<pb::Account>> {
        if let [id] = ids {
            // The single-key path is single-flighted against stampedes on one account.
            let store = &self.store;
            let one = self
                .accounts
                .get(&id.to_string(), || async move {
                    let rows = store.accounts_by_ids(&[*id]).await?;
                    Ok::<_, Error>(rows.into_iter().next().map(pb::Account::from))
                })
                .await?;
            return Ok(one.into_iter().collect());
        }
        let keys: Vec<String> = ids.iter().map(i64::to_string).collect();
        let found = self
            .accounts
            .get_many(&keys, |missing| async move {
                let ids: Vec<i64> = missing.iter().filter_map(|k| k.parse().ok()).collect();
                let rows = self.store.accounts_by_ids(&ids).await?;
                Ok::<_, Error>(
                    rows.into_iter()
                        .map(|r| (r.id_key(), pb::Account::from(r)))
                        .collect(),
                )
            })
            .await?;
        Ok(keys.iter().filter_map(|k| found.get(k).cloned()).collect())
    }

    /// The username of `acct` (`name`, `@name`, `name@domain`) when it names a local
    /// account: with no domain or this instance's.
    fn local_username<'a>(&self, acct: &'a str) -> Option<&'a str> {
        let acct = acct.trim().trim_start_matches('@');
        match acct.split_once('@') {
            None => Some(acct),
            Some((user, domain)) if domain.eq_ignore_ascii_case(&self.domain) => Some(user),
            Some(_) => None,
        }
    }

    pub async fn lookup_account(&self, acct: &str) -> Result<pb::Account> {
        let username = self
            .local_username(acct)
            .ok_or(Error::NotFound("account"))?;
        let row = self
            .store
            .account_by_username(username)
            .await?
            .ok_or(Error::NotFound("account"))?;
        Ok(row.into())
    }

    /// Local accounts by username (case-insensitive; `@name` and `name@this-domain`
    /// accepted), in the order first asked, each once; unknown names are left out. One
    /// statement, straight from the rows: at most [`MAX_LOOKUP`] names.
    #[tracing::instrument(skip_all, fields(count = usernames.len()))]
    pub async fn lookup_accounts(&self, usernames: &[String]) -> Result<Vec<pb::Account>> {
        if usernames.len() > MAX_LOOKUP {
            return Err(Error::InvalidArgument(format!(
                "at most {MAX_LOOKUP} usernames per call"
            )));
        }
        let mut wanted: Vec<String> = Vec::with_capacity(usernames.len());
        for name in usernames {
            let Some(name) = self.local_username(name).map(str::to_lowercase) else {
                continue;
            };
            if !name.is_empty() && !wanted.contains(&name) {
                wanted.push(name);
            }
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut found: HashMap<String, pb::Account> = self
            .store
            .accounts_by_usernames(&wanted)
            .await?
            .into_iter()
            .map(|row| {
                let account = pb::Account::from(row);
                (account.username.to_lowercase(), account)
            })
            .collect();
        Ok(wanted.iter().filter_map(|n| found.remove(n)).collect())
    }

    /// Applies one event of the timeline service's stream: `status.created` and
    /// `status.deleted` move the author's `statuses_count` (and `last_status_at`), direct
    /// statuses excepted (Mastodon does not count them). Exactly once per event id, in one
    /// transaction with the deduplication record; the cached account is dropped after
    /// commit. Other topics are ignored; an undecodable event is logged and dropped
    /// (retrying cannot fix it).
    #[tracing::instrument(skip_all, fields(event_id = %event.id, topic = %event.topic))]
    pub async fn apply_timeline_event(&self, event: &Event) -> Result<()> {
        let created = match event.topic.as_str() {
            consumed::STATUS_CREATED => true,
            consumed::STATUS_DELETED => false,
            _ => return Ok(()),
        };
        let status = match <timeline::StatusEvent as prost::Message>::decode(&*event.payload) {
            Ok(status) if !event.id.is_empty() => status,
            Ok(_) => {
                tracing::error!("status event without an id dropped");
                return Ok(());
            }
            Err(e) => {
                tracing::error!(error = %e, "undecodable status event dropped");
                return Ok(());
            }
        };
        if status.visibility() == timeline::Visibility::Direct {
            return Ok(());
        }
        let account = AccountId(status.account_id);
        let mut tx = self.store.begin().await?;
        let fresh = events::mark_processed(&mut tx, STATUSES_COUNT_CONSUMER, &event.id).await?;
        let exists = if !fresh {
            // Applied before; the invalidation below may not have been (a crash right
            // after commit), and is harmless again.
            true
        } else if created {
            self.store
                .count_status_created(&mut tx, account, status.created_at_ms)
                .await?
        } else {
            self.store.count_status_deleted(&mut tx, account).await?
        };
        tx.commit().await?;
        if exists {
            self.accounts.invalidate(&[account.to_string()]).await;
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(account_id = req.account_id))]
    pub async fn update_credentials(
        &self,
        req: pb::UpdateCredentialsRequest,
    ) -> Result<pb::UpdateCredentialsResponse> {
        use pb::update_credentials_response::Result as R;
        let mut errors = Vec::new();
        let mut check = |r: Option<Result<String, FieldError>>| match r {
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => {
                errors.push(e);
                None
            }
            None => None,
        };
        let changes = AccountChanges {
            display_name: check(req.display_name.as_deref().map(domain::parse_display_name)),
            note: check(req.note.as_deref().map(domain::parse_note)),
            default_privacy: check(req.default_privacy.as_deref().map(domain::parse_privacy)),
            default_language: check(req.default_language.as_deref().map(domain::parse_language)),
            locked: req.locked,
            bot: req.bot,
            discoverable: req.discoverable,
            indexable: req.indexable,
            hide_collections: req.hide_collections,
            default_sensitive: req.default_sensitive,
        };
        if !errors.is_empty() {
            return Ok(pb::UpdateCredentialsResponse {
                result: Some(R::Invalid(validation(errors))),
            });
        }
        let id = AccountId(req.account_id);
        let mut tx = self.store.begin().await?;
        // Unlocking accepts every pending follow request (as Mastodon does), before the
        // update so that the returned counts include them.
        let unlocking = changes.locked == Some(false);
        let mut changed = vec![id.to_string()];
        if unlocking {
            let accepted = self.accept_pending(&mut tx, id).await?;
            changed.extend(accepted.iter().map(ToString::to_string));
        }
        let account: pb::Account = self
            .store
            .update_account(&mut tx, id, &changes)
            .await?
            .ok_or(Error::NotFound("account"))?
            .into();
        self.publish(&mut tx, topics::ACCOUNT_UPDATED, &account)
            .await?;
        tx.commit().await?;
        self.outbox.committed();
        self.accounts.invalidate(&changed).await;
        if unlocking {
            self.accept_stragglers(id).await;
        }
        Ok(pb::UpdateCredentialsResponse {
            result: Some(R::Account(account)),
        })
    }

    pub async fn instance_stats(&self) -> Result<pb::InstanceStats> {
        let (user_count, active_month, active_halfyear) = self.store.stats().await?;
        Ok(pb::InstanceStats {
            user_count,
            active_month,
            active_halfyear,
        })
    }
}

fn app_proto(row: AppRow) -> pb::App {
    pb::App {
        id: row.id,
        name: row.name,
        website: row.website,
        redirect_uris: row.redirect_uris,
        scopes: row.scopes,
        client_id: row.client_id,
        client_secret: String::new(),
        created_at_ms: row.created_at.timestamp_millis(),
    }
}

fn hash_password_blocking(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("password hashing: {e}")))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Comparison whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
