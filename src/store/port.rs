//! The actors' storage port ([`Store`]) over [`Db`]: each call forwards to the inherent
//! method of the same name in its aggregate's file.

use async_trait::async_trait;
use kioskd_actors::ports::*;

use super::Db;

#[async_trait]
impl Store for Db {
    async fn device_by_code(&self, code: &str) -> StoreResult<Option<DeviceRecord>> {
        Db::device_by_code(self, code).await
    }

    async fn set_device_status(
        &self,
        device_id: i64,
        status: PersistedStatus,
        maintainer: Option<&str>,
    ) -> StoreResult<()> {
        Db::set_device_status(self, device_id, status, maintainer).await
    }

    async fn set_device_updating(&self, device_id: i64, updating: bool) -> StoreResult<()> {
        Db::set_device_updating(self, device_id, updating).await
    }

    async fn start_session(&self, new: NewSession) -> Result<Started, StartError> {
        Db::start_session(self, new).await
    }

    async fn reserve_unit(
        &self,
        session_id: i64,
        user_id: i64,
        unit: i64,
        price: i64,
        last_heard_at: i64,
        now: i64,
    ) -> StoreResult<Reserve> {
        Db::reserve_unit(self, session_id, user_id, unit, price, last_heard_at, now).await
    }

    async fn end_session(&self, end: SessionEnd) -> StoreResult<Ended> {
        Db::end_session(self, end).await
    }

    async fn active_sessions(&self) -> StoreResult<Vec<SessionRecord>> {
        Db::active_sessions(self).await
    }

    async fn active_session(&self, key: ActiveKey<'_>) -> StoreResult<Option<SessionRecord>> {
        Db::active_session(self, key).await
    }

    async fn record_heartbeats(
        &self,
        devices: &[LastHeard],
        sessions: &[LastHeard],
    ) -> StoreResult<()> {
        Db::record_heartbeats(self, devices, sessions).await
    }

    async fn user_balance(&self, user_id: i64) -> StoreResult<i64> {
        Db::user_balance(self, user_id).await
    }

    async fn add_command(
        &self,
        device_id: i64,
        name: &str,
        text: Option<&str>,
        now: i64,
    ) -> StoreResult<i64> {
        Db::add_command(self, device_id, name, text, now).await
    }

    async fn add_broadcast(&self, name: &str, text: Option<&str>, now: i64) -> StoreResult<i64> {
        Db::add_broadcast(self, name, text, now).await
    }

    async fn pending_commands(
        &self,
        device_id: i64,
        broadcasts_since: i64,
    ) -> StoreResult<Vec<PendingCommand>> {
        Db::pending_commands(self, device_id, broadcasts_since).await
    }

    async fn ack_commands(&self, ids: &[i64], now: i64) -> StoreResult<()> {
        Db::ack_commands(self, ids, now).await
    }

    async fn unpaid_order_of_device(&self, device_id: i64) -> StoreResult<Option<String>> {
        Db::unpaid_order_of_device(self, device_id).await
    }

    async fn reserve_priced_unit(
        &self,
        session_id: i64,
        user_id: i64,
        charge: UnitCharge,
        last_heard_at: i64,
        now: i64,
    ) -> StoreResult<Reserve> {
        self.reserve_priced(session_id, user_id, charge, last_heard_at, now)
            .await
    }

    async fn session_units(&self, session_id: i64) -> StoreResult<Vec<UnitCharge>> {
        self.session_units_of(session_id).await
    }

    async fn held_packages(
        &self,
        user_id: i64,
        now: i64,
    ) -> StoreResult<Vec<kioskd_actors::pricing::HeldPackage>> {
        self.held_packages_of(user_id, now).await
    }

    async fn user_group(&self, user_id: i64) -> StoreResult<Option<i64>> {
        self.group_of_user(user_id).await
    }
}
