// Boost.JSON's implementation, compiled once for every program of the project (logs, the event
// log, the control socket and the gateway's reports are JSON lines).
#include <boost/json/src.hpp>
