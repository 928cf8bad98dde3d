//! Everything that speaks HTTP or WebSocket to Slack: incoming webhooks ([`webhook`]), the Web
//! API with the bot and app tokens ([`web_api`]), and the Socket Mode connection that brings
//! clicks in ([`socket_mode`]); [`edits`] keeps a message's edits in order. Nothing outside this module builds a Slack request.

mod clip;
pub mod edits;
pub mod socket_mode;
pub mod web_api;
pub mod webhook;
