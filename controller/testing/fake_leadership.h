// FakeLeadership: a Leadership a test sets by hand: leading or not, the
// leader it names (ctl-b at 127.0.0.1:7701), one Dispatcher for every term.
#ifndef DISPATCHD_CONTROLLER_TESTING_FAKE_LEADERSHIP_H_
#define DISPATCHD_CONTROLLER_TESTING_FAKE_LEADERSHIP_H_

#include <atomic>
#include <memory>
#include <string>

#include "common/clock.h"
#include "controller/dispatcher.h"
#include "controller/leadership.h"

namespace dispatchd {
namespace controller {

class FakeLeadership final : public Leadership {
 public:
  explicit FakeLeadership(Clock* clock)
      : dispatcher_(std::make_shared<Dispatcher>(DispatcherOptions{}, clock)) {}
  bool Leading() const override { return leading.load(); }
  LeaderInfo leader() const override { return {"ctl-b", "127.0.0.1:7701"}; }
  const std::string& identity() const override { return identity_; }
  std::shared_ptr<Dispatcher> dispatcher() const override { return dispatcher_; }

  std::atomic<bool> leading{false};

 private:
  std::string identity_ = "ctl-a";
  std::shared_ptr<Dispatcher> dispatcher_;
};

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_TESTING_FAKE_LEADERSHIP_H_
