// The admin actions: unlock, retire, a biological-indicator result. The
// console refuses them to an auditor, and ingestd would too.
#include "console/console_internal.h"

#include <algorithm>
#include <map>
#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>

#include "rollerctl/format.h"
#include "rollerctl/report.h"
#include "util/cat.h"
#include "util/clock.h"

namespace rollertrace::console {

namespace v1 = rollertrace::v1;
using util::Cat;
using namespace internal;  // NOLINT: the console's own helpers

bool Console::RefuseUnlessAdmin(Call& c, const char* what) {
  if (c.admin()) return false;
  c.res.status = 403;
  Page(c, "Refused", Cat("<p class=\"error\" id=\"error\">Only an admin may ", what, ".</p>"));
  return true;
}

void Console::Done(Call& c, const grpc::Status& st, const std::string& next) {
  if (!st.ok()) return Fail(c, st);
  c.res.status = 303;
  c.res.set_header("Location", next);
}

void Console::Unlock(Call& c) {
  const std::string id = c.req.matches[1];
  if (RefuseUnlessAdmin(c, "unlock a roller")) return;
  const std::string reason = c.Param("reason");
  if (reason.size() < 5) {
    c.res.status = 400;
    return Page(c, "Unlock " + id, "<p class=\"error\" id=\"error\">An unlock needs a reason (5 characters or more).</p>");
  }
  v1::UnlockRequest ur;
  ur.set_device_id(id);
  ur.set_reason(reason);
  ur.set_by("console admin");
  v1::Device out;
  auto ctx = c.Context();
  Done(c, registry_->Unlock(ctx.get(), ur, &out), RollerLink(id));
}

void Console::Retire(Call& c) {
  const std::string id = c.req.matches[1];
  if (RefuseUnlessAdmin(c, "retire a roller")) return;
  v1::RetireRequest rr;
  rr.set_device_id(id);
  rr.set_reason(c.Param("reason"));
  v1::Device out;
  auto ctx = c.Context();
  Done(c, registry_->Retire(ctx.get(), rr, &out), RollerLink(id));
}


void Console::Indicator(Call& c) {
  const std::string steriliser = c.req.matches[1];
  const uint64_t number = CycleNumber(c);
  if (RefuseUnlessAdmin(c, "record an indicator result")) return;
  const std::string result = c.Param("result");
  if (result != "pass" && result != "fail") {
    c.res.status = 400;
    return Page(c, "Indicator", "<p class=\"error\" id=\"error\">The result must be pass or fail.</p>");
  }
  if (c.Param("confirm") != "yes") {
    // Show what it will do before it does it.
    v1::CycleTrail trail;
    if (grpc::Status st = ReadCycleTrail(c, steriliser, number, &trail); !st.ok()) return Fail(c, st);
    std::string body = Cat("<p id=\"confirm-text\">Record a <b>", result, "</b> for cycle ", Escape(steriliser), " #",
                           number, ".");
    if (result == "fail") {
      body += Cat(" This starts a recall: the ", trail.sessions_size(),
                  " sessions that relied on this cycle (and on every cycle of this steriliser since its last negative "
                  "indicator) are marked at risk and their rollers locked.");
    }
    body += "</p><form method=\"post\" id=\"confirm-form\">" + c.CsrfField() + Hidden("result", result) +
            Hidden("confirm", "yes") + "<button id=\"confirm\">Record " + Escape(result) + "</button> <a href=\"" +
            Escape(CycleLink(steriliser, number)) + "\">cancel</a></form>";
    return Page(c, "Confirm", body);
  }
  v1::BiologicalIndicatorRequest br;
  br.set_steriliser_id(steriliser);
  br.set_cycle_number(number);
  br.set_result(result == "fail" ? v1::INDICATOR_FAIL : v1::INDICATOR_PASS);
  br.set_recorded_by("console admin");
  v1::BiologicalIndicatorResponse out;
  auto ctx = c.Context();
  Done(c, compliance_->RecordBiologicalIndicator(ctx.get(), br, &out), CycleLink(steriliser, number));
}

}  // namespace rollertrace::console
