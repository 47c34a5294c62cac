// The TCP and TLS byte streams (asio_byte_stream.hpp), compiled once for every shell that uses
// them: the composed TLS reads and writes are among the heaviest templates Asio has.
#include <meshmaster/shell/asio_byte_stream.hpp>

namespace meshmaster::shell {

template class asio_byte_stream<boost::asio::ip::tcp::socket>;
template class asio_byte_stream<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>>;

}  // namespace meshmaster::shell
