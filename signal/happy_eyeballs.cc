#include "signal/happy_eyeballs.h"

#include <algorithm>

namespace burrow {

std::vector<SocketAddress> happy_eyeballs_order(const std::vector<SocketAddress>& resolved) {
    std::vector<SocketAddress> v6, v4;
    for (const SocketAddress& a : resolved) {
        auto& family = a.v6 ? v6 : v4;
        if (std::find(family.begin(), family.end(), a) == family.end()) family.push_back(a);
    }
    std::vector<SocketAddress> out;
    out.reserve(v6.size() + v4.size());
    for (size_t i = 0; i < std::max(v6.size(), v4.size()); ++i) {
        if (i < v6.size()) out.push_back(v6[i]);
        if (i < v4.size()) out.push_back(v4[i]);
    }
    return out;
}

}  // namespace burrow
