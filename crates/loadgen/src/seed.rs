//! Seeding: the bulk load of the planned instance, then the part that must go through the
//! public API (media processing, and events that become notifications).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use argon2::{Argon2, PasswordHasher};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use http::Method;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rookery_timeline::text;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgPoolOptions;

use crate::api::Api;
use crate::dataset::{self, Account, Dataset, Plan, SeedConfig, StatusRef};
use crate::store::{self, StatusRows};
use crate::workload::{self, TAGS};
use crate::zipf::Zipf;

/// Where to seed.
#[derive(Clone, Debug)]
pub struct Targets {
    /// The users service's database URL (its role, its schema).
    pub users_db: String,
    /// The timeline service's database URL.
    pub timeline_db: String,
    /// The gateway (loopback).
    pub gateway: SocketAddr,
    /// The instance's domain and base URL, as the services are configured.
    pub domain: String,
    pub base_url: String,
}

fn step(what: &str, since: Instant) {
    eprintln!(
        "[loadgen] seed: {what} ({:.1} s)",
        since.elapsed().as_secs_f64()
    );
}

fn secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Seeds a fresh instance as `config` plans it and returns what the workload needs.
pub async fn seed(config: &SeedConfig, targets: &Targets) -> anyhow::Result<Dataset> {
    let started = Instant::now();
    let plan = dataset::plan(config);
    step("planned", started);
    let users = PgPoolOptions::new()
        .max_connections(2)
        .connect(&targets.users_db)
        .await?;
    let timeline = PgPoolOptions::new()
        .max_connections(2)
        .connect(&targets.timeline_db)
        .await?;
    store::ensure_empty(&users).await?;

    // Accounts (the star last), one token each; every account shares one password hash.
    let n = plan.by_activity.len();
    let mut usernames: Vec<String> = (0..n).map(dataset::username).collect();
    usernames.push("star".into());
    let tokens: Vec<String> = usernames.iter().map(|_| secret()).collect();
    let hashes: Vec<Vec<u8>> = tokens
        .iter()
        .map(|t| Sha256::digest(t.as_bytes()).to_vec())
        .collect();
    let password = tokio::task::spawn_blocking(|| {
        Argon2::default()
            .hash_password(b"loadgen password")
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))
    })
    .await??;
    let app = store::insert_app(&users, &secret(), &Sha256::digest(secret().as_bytes())).await?;
    let now_ms = Utc::now().timestamp_millis();
    let day_ms = 86_400_000;
    let joined = at(now_ms - (i64::from(config.days) + 30) * day_ms);
    let ids = store::insert_accounts(&users, app, &usernames, &hashes, &password, joined).await?;
    anyhow::ensure!(
        ids.len() == n + 1,
        "inserted {} of {} accounts",
        ids.len(),
        n + 1
    );
    step("accounts and tokens", started);

    let star = ids[n];
    let mut follows: Vec<(i64, i64)> = plan
        .follows
        .iter()
        .map(|e| (ids[e.follower as usize], ids[e.followed as usize]))
        .collect();
    follows.extend(ids[..n].iter().map(|&id| (id, star)));
    store::insert_follows(&users, &follows).await?;
    step(&format!("{} follows", follows.len()), started);

    let status_ids = insert_statuses(&plan, &ids, &usernames, targets, now_ms, &timeline).await?;
    step(&format!("{} statuses", status_ids.len()), started);
    let favourites: Vec<(i64, i64)> = plan
        .favourites
        .iter()
        .map(|&(a, s)| (ids[a as usize], status_ids[s]))
        .collect();
    store::insert_favourites(&timeline, &favourites, at(now_ms - day_ms)).await?;
    step(&format!("{} favourites", favourites.len()), started);

    let per_author = dataset::statuses_per_author(&plan);
    let (mut authors, mut counts, mut last) = (Vec::new(), Vec::new(), Vec::new());
    for (author, (count, newest_age)) in per_author {
        authors.push(ids[author as usize]);
        counts.push(count);
        last.push(at(now_ms - newest_age));
    }
    store::set_status_counts(&users, &authors, &counts, &last).await?;
    store::analyze(
        &users,
        &["accounts", "credentials", "access_tokens", "follows"],
    )
    .await?;
    store::analyze(
        &timeline,
        &["statuses", "favourites", "tags", "status_tags"],
    )
    .await?;
    users.close().await;
    timeline.close().await;
    step("counters and statistics", started);

    let accounts: Vec<Account> = usernames
        .into_iter()
        .zip(tokens)
        .zip(&ids)
        .map(|((username, token), &id)| Account {
            id,
            username,
            token,
        })
        .collect();
    let mut data = Dataset {
        config: config.clone(),
        star: accounts[n].clone(),
        accounts: accounts[..n].to_vec(),
        statuses: plan
            .popular
            .iter()
            .map(|&j| StatusRef {
                id: status_ids[j],
                author: plan.statuses[j].author,
            })
            .collect(),
        by_activity: plan.by_activity,
        by_followers: plan.by_followers,
        media: Vec::new(),
    };
    through_api(&mut data, targets.gateway).await?;
    step("media and notifications through the API", started);
    Ok(data)
}

/// Inserts the planned statuses, rendered as the timeline renders them; returns their
/// ids in plan order.
async fn insert_statuses(
    plan: &Plan,
    ids: &[i64],
    usernames: &[String],
    targets: &Targets,
    now_ms: i64,
    timeline: &sqlx::PgPool,
) -> anyhow::Result<Vec<i64>> {
    let mut rows = StatusRows::default();
    let urls: HashMap<&str, String> = usernames
        .iter()
        .map(|u| (u.as_str(), format!("{}/@{u}", targets.base_url)))
        .collect();
    for (j, s) in plan.statuses.iter().enumerate() {
        let created = now_ms - s.age_ms;
        // Time-ordered like the services' ids: milliseconds << 16 | a sequence.
        let id = (created << 16) | (j as i64 & 0xffff);
        let parsed = text::parse(&s.text, &targets.domain);
        let mentions: HashMap<String, text::MentionTarget<'_>> = parsed
            .mentions
            .iter()
            .filter_map(|m| {
                let (name, url) = urls.get_key_value(m.as_str())?;
                Some((
                    m.clone(),
                    text::MentionTarget {
                        username: name,
                        url,
                    },
                ))
            })
            .collect();
        rows.content.push(text::render(
            &s.text,
            &targets.domain,
            &targets.base_url,
            &mentions,
        ));
        rows.id.push(id);
        rows.account.push(ids[s.author as usize]);
        rows.text.push(s.text.clone());
        rows.reply_to.push(s.reply_to.map(|p| rows.id[p]));
        rows.reply_to_account
            .push(s.reply_to.map(|p| rows.account[p]));
        rows.tag.push(parsed.tags.into_iter().next());
        rows.created_at.push(at(created));
    }
    store::insert_statuses(timeline, &rows).await?;
    Ok(rows.id)
}

/// Media uploads (processed by the media service) attached to new statuses, then
/// favourites, replies and follows whose events become notifications.
async fn through_api(data: &mut Dataset, gateway: SocketAddr) -> anyhow::Result<()> {
    let mut api = Api::new(gateway);
    let n = data.accounts.len();
    for m in 0..data.config.media {
        let author = data.by_activity[m % n] as usize;
        let token = data.accounts[author].token.clone();
        let (content_type, body) = workload::upload_body(&workload::png(m as u32)?);
        let content_type = content_type.to_str()?.to_owned();
        let media = api
            .ok(
                Method::POST,
                "/api/v2/media",
                Some(&token),
                Some((&content_type, body)),
            )
            .await?;
        let id = media["id"].as_str().context("media id")?.to_owned();
        for key in ["url", "preview_url"] {
            if let Some(url) = media[key].as_str() {
                let path = url::Url::parse(url)?.path().to_owned();
                data.media.push(path);
            }
        }
        let status = api
            .post_form(
                "/api/v1/statuses",
                &token,
                &[("status", "A photo #photography"), ("media_ids[]", &id)],
            )
            .await?;
        let sid: i64 = status["id"].as_str().context("status id")?.parse()?;
        data.statuses.push(StatusRef {
            id: sid,
            author: author as u32,
        });
    }

    let data = Arc::new(data.clone());
    let users = Zipf::new(n, 1.0);
    let popular = Zipf::new(data.statuses.len(), 1.0);
    let profiles = Zipf::new(n, 1.0);
    let tags = Zipf::new(TAGS.len(), 1.0);
    let workers = 8;
    let per_worker = data.config.api_actions.div_ceil(workers);
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..workers)
        .map(|w| {
            let data = data.clone();
            let (users, popular, profiles, tags) = (&users, &popular, &profiles, &tags);
            async move {
                let mut api = Api::new(gateway);
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(data.config.seed ^ (w as u64 + 1));
                for a in 0..per_worker {
                    let actor = &data.accounts[data.by_activity[users.sample(&mut rng)] as usize];
                    let status = data.statuses[popular.sample(&mut rng)];
                    match a % 3 {
                        0 => {
                            let path = format!("/api/v1/statuses/{}/favourite", status.id);
                            api.ok(Method::POST, &path, Some(&actor.token), None)
                                .await?;
                        }
                        1 => {
                            let author = &data.accounts[status.author as usize].username;
                            let text = workload::compose(&mut rng, tags, Some(author));
                            let reply_to = status.id.to_string();
                            let form = [("status", text.as_str()), ("in_reply_to_id", &reply_to)];
                            api.post_form("/api/v1/statuses", &actor.token, &form)
                                .await?;
                        }
                        _ => {
                            let target = &data.accounts
                                [data.by_followers[profiles.sample(&mut rng)] as usize];
                            if target.id != actor.id {
                                let path = format!("/api/v1/accounts/{}/follow", target.id);
                                api.ok(Method::POST, &path, Some(&actor.token), None)
                                    .await?;
                            }
                        }
                    }
                }
                Ok(())
            }
        })
        .buffer_unordered(workers)
        .collect()
        .await;
    results.into_iter().collect()
}
