//! `shared::db::Listing`, the one listing query, against a real PostgreSQL:
//! filters with a value narrow the rows and the total, filters without one
//! are left out, the page bounds the rows but not the total, and the order
//! is the one asked for.
#![cfg(feature = "testing")]

use shared::db::Listing;
use shared::http::Page;
use sqlx::{PgPool, Row};

async fn table() -> PgPool {
    let url = shared::testing::fresh_database("listing").await;
    let pool = PgPool::connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TABLE things (id bigint PRIMARY KEY, owner bigint NOT NULL, kind text NOT NULL, \
         gone boolean NOT NULL DEFAULT false)",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Owners 1 and 2 alternate; kinds cycle a, b, c; every fifth is gone.
    sqlx::query(
        "INSERT INTO things (id, owner, kind, gone) \
         SELECT i, 1 + i % 2, chr(97 + i % 3), i % 5 = 0 FROM generate_series(1, 30) i",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool
}

fn ids(rows: &[sqlx::postgres::PgRow]) -> Vec<i64> {
    rows.iter().map(|r| r.get::<i64, _>("id")).collect()
}

#[tokio::test]
async fn a_listing_filters_only_on_the_values_it_is_given_and_pages_the_rest() {
    let pool = table().await;
    let all = Page {
        limit: 100,
        offset: 0,
    };

    let (rows, total) = Listing::of("things", "id")
        .filter("owner", None::<i64>)
        .fetch(&pool, all)
        .await
        .unwrap();
    assert_eq!((rows.len(), total), (30, 30), "no value, no filter");
    assert_eq!(ids(&rows), (1..=30).collect::<Vec<_>>(), "by id by default");

    let (rows, total) = Listing::of("things", "id")
        .filter("owner", Some(2_i64))
        .filter("kind", Some("a"))
        .fetch(&pool, all)
        .await
        .unwrap();
    let expected: Vec<i64> = (1..=30).filter(|i| i % 2 == 1 && i % 3 == 0).collect();
    assert_eq!(ids(&rows), expected);
    assert_eq!(total, expected.len() as i64);

    let (rows, total) = Listing::of("things", "id")
        .condition("NOT gone")
        .filter("owner", Some(1_i64))
        .order_by("id DESC")
        .fetch(
            &pool,
            Page {
                limit: 3,
                offset: 2,
            },
        )
        .await
        .unwrap();
    let live: Vec<i64> = (1..=30)
        .rev()
        .filter(|i| i % 2 == 0 && i % 5 != 0)
        .collect();
    assert_eq!(ids(&rows), live[2..5], "the page of the ordered rows");
    assert_eq!(total, live.len() as i64, "the total counts every match");
}

#[derive(Debug, PartialEq, sqlx::FromRow)]
struct Thing {
    id: i64,
    kind: String,
}

#[tokio::test]
async fn a_listing_reads_rows_as_a_type() {
    let pool = table().await;
    let (things, total) = Listing::of("things", "id, kind")
        .filter("id", Some(4_i64))
        .fetch_as::<Thing>(
            &pool,
            Page {
                limit: 10,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(total, 1);
    assert_eq!(
        things,
        [Thing {
            id: 4,
            kind: "b".into()
        }]
    );
}
