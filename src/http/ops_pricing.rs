//! The ops API for pricing (issue 16 item 5; `docs/pricing.md`, "Managing prices"):
//! rate plans with their weekly grid and date overrides, zones and device assignment,
//! member groups, packages and grants. Each handler decodes, makes one call into
//! [`crate::pricing`] and encodes; errors are the ops dialect's `{"error"}`. Reads are
//! for viewers, changes for admins (`authz::rule`); every change is in the audit log.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use kioskd_actors::pricing::RatePlan;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::extract::{EnvJson, OpsPath};
use super::ops::{Operator, OpsResult, body};
use crate::pricing::{self, PlanView};

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ops/pricing/plans", get(list_plans).post(create_plan))
        .route(
            "/ops/pricing/plans/{id}",
            get(show_plan).put(set_grid).delete(delete_plan),
        )
        .route(
            "/ops/pricing/plans/{id}/days/{day}",
            put(set_day).delete(clear_day),
        )
        .route("/ops/pricing/zones", get(list_zones).post(create_zone))
        .route("/ops/pricing/zones/{id}", put(set_zone))
        .route("/ops/pricing/devices/{code}", put(assign_device))
        .route("/ops/pricing/groups", get(list_groups).post(create_group))
        .route("/ops/pricing/groups/{id}", put(set_group))
        .route("/ops/users/{id}/group", put(set_user_group))
        .route(
            "/ops/pricing/packages",
            get(list_packages).post(create_package),
        )
        .route("/ops/pricing/packages/{id}", put(set_package))
        .route(
            "/ops/users/{id}/packages",
            get(user_packages).post(grant_package),
        )
}

fn plan_json(p: &RatePlan) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "week": p.week,
        "overrides": p.overrides.iter().map(|(d, s)| (d.format("%Y-%m-%d").to_string(), json!(s))).collect::<serde_json::Map<String, Value>>(),
        "min_charge": p.min_charge,
    })
}

fn plan_view_json(v: &PlanView) -> Value {
    let mut j = plan_json(&v.plan);
    j["used_by"] = json!(v.users);
    j
}

async fn list_plans(_: Operator, State(s): State<AppState>) -> OpsResult {
    let plans = pricing::plans(&s).await?;
    let data: Vec<Value> = plans.iter().map(plan_view_json).collect();
    Ok(Json(json!({ "total": data.len(), "data": data })).into_response())
}

async fn show_plan(_: Operator, State(s): State<AppState>, OpsPath(id): OpsPath<i64>) -> OpsResult {
    let v = pricing::plan(&s, id).await?;
    Ok(Json(plan_view_json(&v)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPlan {
    name: String,
    week: Vec<i64>,
    #[serde(default)]
    min_charge: i64,
    #[serde(rename = "reason")]
    _reason: Option<String>,
}

async fn create_plan(
    _: Operator,
    State(s): State<AppState>,
    b: Result<EnvJson<NewPlan>, Response>,
) -> OpsResult {
    let req = body(b).await?;
    let id = pricing::create_plan(&s, &req.name, &req.week, req.min_charge).await?;
    let v = pricing::plan(&s, id).await?;
    Ok((StatusCode::CREATED, Json(plan_view_json(&v))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Grid {
    week: Vec<i64>,
    #[serde(default)]
    min_charge: i64,
    #[serde(rename = "reason")]
    _reason: Option<String>,
}

/// `PUT /ops/pricing/plans/<id> {week, min_charge}`: the whole weekly grid.
async fn set_grid(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(id): OpsPath<i64>,
    b: Result<EnvJson<Grid>, Response>,
) -> OpsResult {
    let req = body(b).await?;
    pricing::set_grid(&s, id, &req.week, req.min_charge).await?;
    let v = pricing::plan(&s, id).await?;
    Ok(Json(plan_view_json(&v)).into_response())
}

async fn delete_plan(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(id): OpsPath<i64>,
) -> OpsResult {
    pricing::delete_plan(&s, id).await?;
    Ok(Json(json!({ "id": id, "deleted": true })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Day {
    slots: Vec<i64>,
    #[serde(rename = "reason")]
    _reason: Option<String>,
}

/// `PUT /ops/pricing/plans/<id>/days/<YYYY-MM-DD> {slots}`: a date's own 48 rates.
async fn set_day(
    _: Operator,
    State(s): State<AppState>,
    OpsPath((id, day)): OpsPath<(i64, String)>,
    b: Result<EnvJson<Day>, Response>,
) -> OpsResult {
    let req = body(b).await?;
    pricing::set_day(&s, id, &day, Some(&req.slots)).await?;
    let v = pricing::plan(&s, id).await?;
    Ok(Json(plan_view_json(&v)).into_response())
}

async fn clear_day(
    _: Operator,
    State(s): State<AppState>,
    OpsPath((id, day)): OpsPath<(i64, String)>,
) -> OpsResult {
    pricing::set_day(&s, id, &day, None).await?;
    let v = pricing::plan(&s, id).await?;
    Ok(Json(plan_view_json(&v)).into_response())
}

async fn list_zones(_: Operator, State(s): State<AppState>) -> OpsResult {
    let (zones, devices) = pricing::zones(&s).await?;
    Ok(Json(json!({
        "total": zones.len(),
        "data": zones.iter().map(|z| json!({
            "id": z.id,
            "name": z.name,
            "plan_id": z.plan_id,
            "devices": devices.iter().filter(|d| d.zone_id == Some(z.id)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "devices": devices,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewZone {
    name: String,
    plan_id: Option<i64>,
    #[serde(rename = "reason")]
    _reason: Option<String>,
}

async fn create_zone(
    _: Operator,
    State(s): State<AppState>,
    b: Result<EnvJson<NewZone>, Response>,
) -> OpsResult {
    let req = body(b).await?;
    let id = pricing::create_zone(&s, &req.name, req.plan_id).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "name": req.name.trim(), "plan_id": req.plan_id })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetZone {
    plan_id: Option<i64>,
    #[serde(rename = "reason")]
    _reason: Option<String>,
}

/// `PUT /ops/pricing/zones/<id> {plan_id}` (null: the zone's devices go back to their
/// flat price unless they have a plan of their own).
async fn set_zone(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(id): OpsPath<i64>,
    b: Result<EnvJson<SetZone>, Response>,
) -> OpsResult {
    let req = body(b).await?;
    pricing::set_zone_plan(&s, id, req.plan_id).await?;
    Ok(Json(json!({ "id": id, "plan_id": req.plan_id })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Assign {
    zone_id: Option<i64>,
    plan_id: Option<i64>,
    #[serde(rename = "reason")]
    _reason: Option<String>,
}

/// `PUT /ops/pricing/devices/<code> {zone_id, plan_id}`: both are set (null clears).
async fn assign_device(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(code): OpsPath<String>,
    b: Result<EnvJson<Assign>, Response>,
) -> OpsResult {
    let req = body(b).await?;
    let code = pricing::assign_device(&s, &code, req.zone_id, req.plan_id).await?;
    Ok(
        Json(json!({ "device_code": code, "zone_id": req.zone_id, "plan_id": req.plan_id }))
            .into_response(),
    )
}

async fn list_groups(_: Operator, State(s): State<AppState>) -> OpsResult {
    let groups = pricing::groups(&s).await?;
    Ok(Json(json!({ "total": groups.len(), "data": groups })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGroup {
    name: String,
    #[serde(default)]
    discount_pct: i64,
    plan_id: Option<i64>,
    #[serde(rename = "reason")]
    _reason: Option<String>,
}

async fn create_group(
    _: Operator,
    State(s): State<AppState>,
    b: Result<EnvJson<NewGroup>, Response>,
) -> OpsResult {
    let req = body(b).await?;
    let id = pricing::create_group(&s, &req.name, req.discount_pct, req.plan_id).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "name": req.name.trim(), "discount_pct": req.discount_pct, "plan_id": req.plan_id })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetGroup {
    discount_pct: i64,
    plan_id: Option<i64>,
    #[serde(rename = "reason")]
    _reason: Option<String>,
}

async fn set_group(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(id): OpsPath<i64>,
    b: Result<EnvJson<SetGroup>, Response>,
) -> OpsResult {
    let req = body(b).await?;
    pricing::set_group(&s, id, req.discount_pct, req.plan_id).await?;
    Ok(
        Json(json!({ "id": id, "discount_pct": req.discount_pct, "plan_id": req.plan_id }))
            .into_response(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserGroup {
    group_id: Option<i64>,
    #[serde(rename = "reason")]
    _reason: Option<String>,
}

/// `PUT /ops/users/<id>/group {group_id}` (null: no group). Sessions started afterwards
/// use it.
async fn set_user_group(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(id): OpsPath<i64>,
    b: Result<EnvJson<UserGroup>, Response>,
) -> OpsResult {
    let req = body(b).await?;
    pricing::set_user_group(&s, id, req.group_id).await?;
    Ok(Json(json!({ "user_id": id, "group_id": req.group_id })).into_response())
}

async fn list_packages(_: Operator, State(s): State<AppState>) -> OpsResult {
    let list = pricing::packages(&s).await?;
    Ok(Json(json!({ "total": list.len(), "data": list })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPackage {
    name: String,
    minutes: i64,
    price: i64,
    #[serde(default)]
    zones: Vec<i64>,
    #[serde(default)]
    windows: Vec<String>,
    valid_days: i64,
    #[serde(rename = "reason")]
    _reason: Option<String>,
}

async fn create_package(
    _: Operator,
    State(s): State<AppState>,
    b: Result<EnvJson<NewPackage>, Response>,
) -> OpsResult {
    let req = body(b).await?;
    let id = pricing::create_package(
        &s,
        pricing::NewPackage {
            name: req.name,
            minutes: req.minutes,
            price: req.price,
            zones: req.zones,
            windows: req.windows,
            valid_days: req.valid_days,
        },
    )
    .await?;
    let p = pricing::packages(&s)
        .await?
        .into_iter()
        .find(|p| p.id == id);
    Ok((StatusCode::CREATED, Json(json!(p))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPackage {
    on_sale: bool,
    #[serde(rename = "reason")]
    _reason: Option<String>,
}

/// `PUT /ops/pricing/packages/<id> {on_sale}`: withdraw from sale (or put back). Users
/// keep what they hold.
async fn set_package(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(id): OpsPath<i64>,
    b: Result<EnvJson<SetPackage>, Response>,
) -> OpsResult {
    let req = body(b).await?;
    pricing::set_package_on_sale(&s, id, req.on_sale).await?;
    Ok(Json(json!({ "id": id, "on_sale": req.on_sale })).into_response())
}

async fn user_packages(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(id): OpsPath<i64>,
) -> OpsResult {
    let list = pricing::user_packages(&s, id).await?;
    Ok(Json(json!({ "total": list.len(), "data": list })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Grant {
    package_id: i64,
    #[serde(rename = "reason")]
    _reason: Option<String>,
}

/// `POST /ops/users/<id>/packages {package_id, reason?}`: an operator's grant (no
/// payment; the package's time ledger records it).
async fn grant_package(
    _: Operator,
    State(s): State<AppState>,
    OpsPath(id): OpsPath<i64>,
    b: Result<EnvJson<Grant>, Response>,
) -> OpsResult {
    let req = body(b).await?;
    let up = pricing::grant_package(&s, id, req.package_id).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "user_id": id, "package_id": req.package_id, "user_package_id": up })),
    )
        .into_response())
}
