#pragma once
/// systemd readiness for `smtpgate proxy` and `smtpgate milter` run as
/// Type=notify services (contrib/systemd/).
///
/// `notifyReady()` tells systemd the service is up: call it once, after the
/// listening sockets are open (connections then queue in the backlog) and
/// before serving. Built with libsystemd (pkg-config libsystemd), it is
/// sd_notify(0, "READY=1"), which does nothing when NOTIFY_SOCKET is not set
/// (not started by systemd); built without, it does nothing at all and the
/// units must use Type=simple (the build configures them so).

namespace smtpgate::cli {

/// True if systemd was told; false if not under systemd or built without it.
bool notifyReady();

}  // namespace smtpgate::cli
