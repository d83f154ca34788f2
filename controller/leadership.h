// Leadership: what the services of a controller replica ask of leader
// election (implemented by Replica, controller/replica.h): whether this
// replica leads, who does, and the Dispatcher of the current term. Null
// where there is no leader election (a lone controller, all-in-one).
#ifndef DISPATCHD_CONTROLLER_LEADERSHIP_H_
#define DISPATCHD_CONTROLLER_LEADERSHIP_H_

#include <memory>
#include <string>

namespace dispatchd {
namespace controller {

class Dispatcher;

// Who leads, as a replica last saw it; empty identity when it knows none.
struct LeaderInfo {
  std::string identity;
  std::string address;
};

class Leadership {
 public:
  virtual ~Leadership() = default;
  virtual bool Leading() const = 0;
  virtual LeaderInfo leader() const = 0;
  virtual const std::string& identity() const = 0;
  // The current term's Dispatcher (an idle one while standing by). Never
  // null. Holding it keeps it alive after its term ends.
  virtual std::shared_ptr<Dispatcher> dispatcher() const = 0;
};

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_LEADERSHIP_H_
