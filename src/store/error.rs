//! The one place where sqlx's errors become [`StoreError`]s.

use kioskd_actors::ports::StoreError;

/// What the store's writes return. It used to be a separate enum (conflict, refused, not
/// found, or a storage failure); those are now variants of [`StoreError`] itself.
pub type WriteError = StoreError;

/// Maps a driver error to a [`StoreError`]: constraint refusals by kind (a unique key is
/// `Conflict`, a check or a foreign key `Refused`), connection and pool trouble as
/// `Unavailable`, undecodable values as `Corrupt`.
pub(super) fn se(e: sqlx::Error) -> StoreError {
    use sqlx::error::ErrorKind;
    match e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(d) => match d.kind() {
            ErrorKind::UniqueViolation => StoreError::Conflict,
            ErrorKind::CheckViolation | ErrorKind::ForeignKeyViolation => StoreError::Refused,
            _ if is_transient_code(d.code().as_deref()) => {
                StoreError::Unavailable(d.message().to_string())
            }
            _ => StoreError::Other(d.to_string()),
        },
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::ColumnDecode { index, source } => StoreError::Corrupt {
            what: index.trim_matches('"').to_string(),
            value: source.to_string(),
        },
        sqlx::Error::Decode(source) => StoreError::Corrupt {
            what: "a value".into(),
            value: source.to_string(),
        },
        e => StoreError::Other(e.to_string()),
    }
}

/// Database error codes that mean "try again later": SQLite busy/locked (primary codes
/// 5 and 6, whatever the extended code), PostgreSQL connection exceptions (class 08),
/// shutdowns (57P01..57P03) and too many connections (53300).
fn is_transient_code(code: Option<&str>) -> bool {
    let Some(code) = code else {
        return false;
    };
    // PostgreSQL reports five-character SQLSTATEs; SQLite its numeric (extended) result
    // codes, which are shorter.
    if code.len() != 5 {
        return code.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6));
    }
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

pub(super) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes() {
        assert!(is_transient_code(Some("5")));
        assert!(is_transient_code(Some("517")));
        assert!(is_transient_code(Some("6")));
        assert!(!is_transient_code(Some("19")));
        assert!(!is_transient_code(Some("2067")));
        assert!(is_transient_code(Some("08006")));
        assert!(is_transient_code(Some("57P01")));
        assert!(!is_transient_code(Some("23505")));
        assert!(is_transient_code(Some("53300")));
        assert!(!is_transient_code(None));
    }

    /// Constraint violations from a real database come back by kind: a foreign key and a
    /// check are `Refused`, a unique key `Conflict` (nothing else is written).
    #[tokio::test]
    async fn constraint_violations_are_typed() {
        let (_dir, db) = crate::store::scratch_db().await;
        // device_commands.device_id references devices(id); there is no device 999.
        assert_eq!(
            db.add_command(999, "restart", None, 1).await.unwrap_err(),
            StoreError::Refused
        );
        let user = db.ensure_user("o1", "n", "", 1).await.unwrap();
        let dup = sqlx::query("INSERT INTO users (openid, nickname, head_img_url, ctime, utime) VALUES ('o1', '', '', 1, 1)")
            .execute(db.pool())
            .await
            .unwrap_err();
        assert_eq!(se(dup), StoreError::Conflict);
        let negative = sqlx::query("UPDATE users SET balance_account = -1 WHERE id = $1")
            .bind(user.id)
            .execute(db.pool())
            .await
            .unwrap_err();
        assert_eq!(se(negative), StoreError::Refused);
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM device_commands")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn pool_and_row_errors_are_typed() {
        assert_eq!(se(sqlx::Error::RowNotFound), StoreError::NotFound);
        assert!(se(sqlx::Error::PoolTimedOut).is_transient());
        assert!(matches!(
            se(sqlx::Error::Protocol("x".into())),
            StoreError::Other(_)
        ));
    }
}
