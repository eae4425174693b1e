#include "cli/systemd_notify.h"

#ifdef SMTPGATE_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace smtpgate::cli {

bool notifyReady() {
#ifdef SMTPGATE_HAVE_SYSTEMD
  // > 0: sent; 0: NOTIFY_SOCKET unset (not a Type=notify service); < 0: error.
  return ::sd_notify(0, "READY=1") > 0;
#else
  return false;
#endif
}

}  // namespace smtpgate::cli
