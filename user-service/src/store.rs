//! The users table.

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::auth::Role;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgPool, Row};
use utoipa::ToSchema;

use crate::email::Email;

/// A user as the API shows it (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct User {
    pub id: i64,
    /// Equal to `id`; older clients read this name.
    pub user_id: i64,
    pub name: String,
    pub email: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// A user with the stored hash, for login.
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
    /// Bumped on every role or password change; tokens carry it as `ver`.
    pub token_version: i64,
}

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the email is already registered")]
    DuplicateEmail,
    #[error("no such user")]
    NotFound,
    #[error("this is the last admin: make another user an admin first")]
    LastAdmin,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The role a `role` column's text names (the column's CHECK allows these two).
fn role_of(text: &str) -> Role {
    match text {
        "admin" => Role::Admin,
        _ => Role::Customer,
    }
}

const COLUMNS: &str = "id, name, email, role, created_at, password_hash, token_version";

impl sqlx::FromRow<'_, PgRow> for Credentials {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let id: i64 = row.try_get("id")?;
        let role = role_of(row.try_get("role")?);
        Ok(Credentials {
            user: User {
                id,
                user_id: id,
                name: row.try_get("name")?,
                email: row.try_get("email")?,
                role,
                created_at: row.try_get("created_at")?,
            },
            password_hash: row.try_get("password_hash")?,
            token_version: row.try_get("token_version")?,
        })
    }
}

/// PostgreSQL's name for the `UNIQUE` of `users.email` (migrations/0001).
const EMAIL_UNIQUE: &str = "users_email_key";

/// The user database.
#[derive(Debug, Clone)]
pub struct Store {
    pub pool: PgPool,
}

impl Store {
    /// Adds a customer; a taken email (also when two registrations race) is `DuplicateEmail`.
    #[tracing::instrument(name = "INSERT users", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn create(&self, name: &str, email: &Email, hash: &str) -> Result<User, StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO users (name, email, password_hash) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
        )))
        .bind(name)
        .bind(email.as_str())
        .bind(hash)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if shared::db::unique_violation(&e) == Some(EMAIL_UNIQUE) {
                StoreError::DuplicateEmail
            } else {
                StoreError::Db(e)
            }
        })
        .and_then(|row| Ok(Credentials::from_row(&row)?.user))
    }

    pub async fn by_email(&self, email: &Email) -> Result<Option<Credentials>, sqlx::Error> {
        self.find("email = $1", email.as_str()).await
    }

    pub async fn by_id(&self, id: i64) -> Result<Option<Credentials>, sqlx::Error> {
        self.find("id = $1", id).await
    }

    /// The token version and role of user `id` now, and whether token
    /// `jti` was revoked; `None` when the user is gone. One round trip.
    #[tracing::instrument(name = "SELECT users", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn standing(
        &self,
        id: i64,
        jti: Option<uuid::Uuid>,
    ) -> Result<Option<(i64, Role, bool)>, sqlx::Error> {
        let row: Option<(i64, String, bool)> = sqlx::query_as(
            "SELECT token_version, role, \
             EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $2) AS revoked \
             FROM users WHERE id = $1",
        )
        .bind(id)
        .bind(jti)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(version, role, revoked)| (version, role_of(&role), revoked)))
    }

    /// Ends token `jti` of user `user_id` early: refused from now until
    /// `expires_at`, after which it is refused as expired anyway and its
    /// row is pruned (here, with the expired rows of others).
    #[tracing::instrument(name = "INSERT revoked_tokens", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn revoke(
        &self,
        jti: uuid::Uuid,
        user_id: i64,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "WITH pruned AS (DELETE FROM revoked_tokens WHERE expires_at < now()) \
             INSERT INTO revoked_tokens (jti, user_id, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(user_id)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends every token of user `id` (a logout with a token that has no
    /// id of its own).
    #[tracing::instrument(name = "UPDATE users", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn revoke_all(&self, id: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE users SET token_version = token_version + 1, updated_at = now() WHERE id = $1",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The user `condition` (with `$1` = `value`) selects, if any.
    #[tracing::instrument(name = "SELECT users", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    async fn find<'v, T>(
        &self,
        condition: &str,
        value: T,
    ) -> Result<Option<Credentials>, sqlx::Error>
    where
        T: sqlx::Encode<'v, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + 'v,
    {
        let select = format!("SELECT {COLUMNS} FROM users WHERE {condition}");
        sqlx::query_as(sqlx::AssertSqlSafe(select))
            .bind(value)
            .fetch_optional(&self.pool)
            .await
    }

    /// Changes the name and/or the password hash.
    #[tracing::instrument(name = "UPDATE users", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn update_profile(
        &self,
        id: i64,
        name: Option<&str>,
        hash: Option<&str>,
    ) -> Result<User, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE users SET name = COALESCE($2, name), password_hash = COALESCE($3, password_hash), \
             token_version = token_version + CASE WHEN $3 IS NULL THEN 0 ELSE 1 END, \
             updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(name)
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok(Credentials::from_row(&row)?.user)
    }

    /// Changes a user's role and bumps its token version (its older tokens
    /// stop working). The admins' rows are locked first, so two admins
    /// demoting each other at once cannot leave none: the last admin's
    /// demotion is `LastAdmin`.
    #[tracing::instrument(name = "TX set role", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn set_role(&self, id: i64, role: Role) -> Result<User, StoreError> {
        let mut tx = self.pool.begin().await?;
        let admins: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM users WHERE role = 'admin' ORDER BY id FOR UPDATE")
                .fetch_all(&mut *tx)
                .await?;
        if role != Role::Admin && admins == [id] {
            return Err(StoreError::LastAdmin);
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE users SET role = $2, token_version = token_version + 1, updated_at = now() \
             WHERE id = $1 RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(role.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        Ok(Credentials::from_row(&row)?.user)
    }

    /// Creates the configured admin, or makes an existing account with that
    /// email an admin with the configured password. Its older tokens end
    /// (`token_version` bumped), as on any role or password change; the
    /// caller only calls it when the role or the password does change.
    #[tracing::instrument(name = "UPSERT users", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn upsert_admin(&self, email: &Email, hash: &str) -> Result<User, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO users (name, email, password_hash, role) VALUES ('Administrator', $1, $2, 'admin') \
             ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash, role = 'admin', \
             token_version = users.token_version + 1, updated_at = now() RETURNING {COLUMNS}"
        )))
        .bind(email.as_str())
        .bind(hash)
        .fetch_one(&self.pool)
        .await?;
        Ok(Credentials::from_row(&row)?.user)
    }
}
