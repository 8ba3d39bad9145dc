"""A local fake of an epay (彩虹易支付) gateway, for tests: an HTTP server on
127.0.0.1 in a thread that speaks the protocol the shop's provider speaks to
the real one, with its own merchant id and a key made at start.

- GET /submit.php: checks the signed page-jump parameters and opens a trade
  (its trade_no), answering a cashier page (200) or a refusal (400).
- GET /pay.php?trade_no=…: the buyer pays: the trade becomes paid and the
  gateway GETs the shop's notify_url with a signed notification (what it
  answered is kept). `pay(..., notify=False)` pays with the notification lost.
- GET /api.php?act=order: the trade by out_trade_no or trade_no.
- POST /api.php?act=refund: refunds a paid trade once.

The signing is written here again from the protocol (not imported from the
shop), so a shared mistake cannot pass unnoticed."""

import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from .fake_server import FakeProviderServer, http_exchange, query_and_form, reply


def sign(params: dict, key: str) -> str:
    text = "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in ("sign", "sign_type") and params[k] != "")
    return hashlib.md5((text + key).encode()).hexdigest()


@dataclass
class Trade:
    trade_no: str
    out_trade_no: str
    type: str
    name: str
    money: str
    notify_url: str
    return_url: str
    status: int = 0  # 0 unpaid, 1 paid, 2 refunded
    refunds: list = field(default_factory=list)


class FakeEpay(FakeProviderServer):
    def __init__(self, *, pid: str = "1001"):
        super().__init__()
        self.pid = pid
        self.key = secrets.token_hex(16)
        self.trades: dict[str, Trade] = {}
        self.notify_answers: list[tuple[int, str]] = []
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._next = 0

    # --- the buyer's and the tests' side

    def open(self, pay_url: str) -> tuple[int, str]:
        """The buyer's browser follows the shop's pay URL."""
        status, body = http_exchange(pay_url, timeout=10)
        return status, body.decode()

    def trade_for(self, out_trade_no: str) -> Trade:
        return next(t for t in self.trades.values() if t.out_trade_no == out_trade_no)

    def notification(self, trade: Trade, **changes) -> dict:
        """The signed notification of a paid trade (`changes` are applied
        before signing; pass sign=… to forge one)."""
        params = {
            "pid": self.pid,
            "trade_no": trade.trade_no,
            "out_trade_no": trade.out_trade_no,
            "type": trade.type,
            "name": trade.name,
            "money": trade.money,
            "trade_status": "TRADE_SUCCESS",
        }
        forged_sign = changes.pop("sign", None)
        params.update(changes)
        params["sign"] = forged_sign or sign(params, self.key)
        params["sign_type"] = "MD5"
        return params

    def pay(self, trade_no: str, *, notify: bool = True) -> tuple[int, str] | None:
        """The buyer pays the trade; the gateway notifies the shop (GET)."""
        trade = self.trades[trade_no]
        trade.status = 1
        if not notify:
            return None
        return self.notify(trade)

    def notify(self, trade: Trade, **changes) -> tuple[int, str]:
        url = trade.notify_url + "?" + urlencode(self.notification(trade, **changes))
        status, body = http_exchange(url, timeout=30)
        answer = (status, body.decode())
        with self._lock:
            self.notify_answers.append(answer)
        return answer

    # --- the gateway

    def handle(self, handler):
        params = query_and_form(handler)
        path = urlsplit(handler.path).path
        with self._lock:
            self.requests.append(path)
        if path == "/submit.php":
            status, body, kind = self._submit(params)
        elif path == "/pay.php":
            trade = self.trades.get(params.get("trade_no", ""))
            if trade is None:
                status, body, kind = 404, "no such trade", "text/plain"
            else:
                answer = self.pay(trade.trade_no)
                # Like the real gateway, it notifies again while the shop does
                # not answer "success" (an order still being placed: 503).
                for _retry in range(10):
                    if answer[0] < 500:
                        break
                    time.sleep(1)
                    answer = self.notify(trade)
                if trade.return_url:
                    # As the real gateway does: the buyer goes back to the shop.
                    return reply(handler, 302, b"", {"Location": trade.return_url})
                status, body, kind = 200, f"paid; the shop answered {answer}", "text/plain"
        elif path == "/api.php" and params.get("act") == "order":
            status, body, kind = 200, json.dumps(self._order(params)), "application/json"
        elif path == "/api.php" and params.get("act") == "refund":
            status, body, kind = 200, json.dumps(self._refund(params)), "application/json"
        else:
            status, body, kind = 404, "not found", "text/plain"
        reply(handler, status, body.encode(), {"Content-Type": f"{kind}; charset=utf-8"})

    def _submit(self, params: dict):
        required = ("pid", "type", "out_trade_no", "notify_url", "name", "money", "sign")
        if any(not params.get(name) for name in required):
            return 400, "missing parameter", "text/plain"
        if params["pid"] != self.pid:
            return 400, "商户不存在", "text/plain"
        if params.get("sign_type", "MD5") != "MD5" or params["sign"] != sign(params, self.key):
            return 400, "签名校验失败", "text/plain"
        if params["type"] not in ("alipay", "wxpay", "qqpay"):
            return 400, "支付方式不存在", "text/plain"
        with self._lock:
            existing = [t for t in self.trades.values() if t.out_trade_no == params["out_trade_no"]]
            if existing:
                trade = existing[0]
            else:
                self._next += 1
                trade = Trade(
                    trade_no=f"2026{self._next:012d}",
                    out_trade_no=params["out_trade_no"],
                    type=params["type"],
                    name=params["name"],
                    money=params["money"],
                    notify_url=params["notify_url"],
                    return_url=params.get("return_url", ""),
                )
                self.trades[trade.trade_no] = trade
        page = f'<html><body>pay {trade.money} <a href="/pay.php?trade_no={trade.trade_no}">pay</a></body></html>'
        return 200, page, "text/html"

    def _authorized(self, params: dict) -> dict | None:
        if params.get("pid") != self.pid or params.get("key") != self.key:
            return {"code": -2, "msg": "KEY校验失败"}
        return None

    def _find(self, params: dict) -> Trade | None:
        if params.get("trade_no"):
            return self.trades.get(params["trade_no"])
        return next((t for t in self.trades.values() if t.out_trade_no == params.get("out_trade_no")), None)

    def _order(self, params: dict) -> dict:
        refused = self._authorized(params)
        if refused:
            return refused
        trade = self._find(params)
        if trade is None:
            return {"code": -1, "msg": "订单号不存在"}
        return {
            "code": 1,
            "msg": "查询订单号成功！",
            "trade_no": trade.trade_no,
            "out_trade_no": trade.out_trade_no,
            "type": trade.type,
            "pid": int(self.pid),
            "name": trade.name,
            "money": trade.money,
            "status": trade.status,
        }

    def _refund(self, params: dict) -> dict:
        refused = self._authorized(params)
        if refused:
            return refused
        with self._lock:
            trade = self.trades.get(params.get("trade_no", ""))
            if trade is None:
                return {"code": -1, "msg": "订单号不存在"}
            if trade.status != 1:
                return {"code": -1, "msg": "该订单未支付或已退款"}
            if params.get("money") != trade.money:
                return {"code": -1, "msg": "退款金额不正确"}
            trade.status = 2
            trade.refunds.append(params["money"])
        return {"code": 1, "msg": "退款成功"}
