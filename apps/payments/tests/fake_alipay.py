"""A local fake of Alipay's open-platform gateway (openapi.alipay.com/gateway.do),
for tests: an HTTP server on 127.0.0.1 in a thread, with an app id, the app's
RSA key pair and "Alipay's" RSA key pair, all made at start.

- Every request (GET query or POST form) must carry a valid RSA2 signature of
  the app's private key: the parameters but `sign`, without empty values,
  sorted by name, `k=v` joined by `&`, SHA256withRSA, base64.
- alipay.trade.page.pay / wap.pay (the buyer's browser, GET): opens the trade
  and answers a cashier page (200), or a refusal (400).
- alipay.trade.precreate: opens the trade, answers its qr_code.
- alipay.trade.query / refund / close: Alipay's JSON answers
  (`{"<method>_response": {...}, "sign": "..."}`), signed with Alipay's
  private key over the response object's text exactly as sent.
- `pay(out_trade_no)`: the buyer pays: the trade becomes TRADE_SUCCESS and the
  gateway POSTs a signed form notification to the trade's notify_url
  (`notify=False`: the notification is lost).

The signing is written here again from Alipay's documentation with
`cryptography` (not the SDK the shop uses), so a shared mistake cannot pass."""

import base64
import json
import secrets
import threading
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .fake_server import FakeProviderServer, http_exchange, query_and_form, reply

BEIJING = ZoneInfo("Asia/Shanghai")


def rsa_pair() -> tuple[rsa.RSAPrivateKey, str, str]:
    """A new RSA key, its private PEM (PKCS#8) and public PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return key, private, public


def content(params: dict, *, without: tuple[str, ...]) -> str:
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in without and params[k] != "")


def rsa2_sign(key: rsa.RSAPrivateKey, text: str) -> str:
    return base64.b64encode(key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa2_valid(public: rsa.RSAPublicKey, text: str, signature: str) -> bool:
    try:
        public.verify(base64.b64decode(signature), text.encode(), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def now_beijing() -> str:
    return datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Trade:
    out_trade_no: str
    trade_no: str
    total_amount: str
    subject: str
    method: str
    notify_url: str
    return_url: str
    time_expire: str
    status: str = "WAIT_BUYER_PAY"
    refunds: dict = field(default_factory=dict)  # out_request_no -> amount


class FakeAlipay(FakeProviderServer):
    url_path = "/gateway.do"

    def __init__(self, *, app_id: str = "2021000123456789"):
        super().__init__()
        self.app_id = app_id
        self._app_key, self.app_private_key, app_public = rsa_pair()
        self._app_public = serialization.load_pem_public_key(app_public.encode())
        self._alipay_key, _alipay_private, self.alipay_public_key = rsa_pair()
        self.trades: dict[str, Trade] = {}  # by out_trade_no
        self.requests: list[dict] = []  # every verified request's parameters
        self.refused: list[str] = []
        self.notify_answers: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._next = 0

    # --- what a test does as the buyer or as Alipay

    def open(self, pay_url: str) -> tuple[int, str]:
        """The buyer's browser follows the pay URL (page or WAP pay)."""
        status, body = http_exchange(pay_url, timeout=10)
        return status, body.decode()

    def pay(self, out_trade_no: str, *, notify: bool = True) -> tuple[int, str] | None:
        trade = self.trades[out_trade_no]
        trade.status = "TRADE_SUCCESS"
        return self.notify(trade) if notify else None

    def notification(self, trade: Trade, **changes) -> dict:
        """The signed notification of the trade's state (`changes` are applied
        before signing; pass sign=… to forge one)."""
        params = {
            "notify_time": now_beijing(),
            "notify_type": "trade_status_sync",
            "notify_id": secrets.token_hex(16),
            "charset": "utf-8",
            "version": "1.0",
            "app_id": self.app_id,
            "trade_no": trade.trade_no,
            "out_trade_no": trade.out_trade_no,
            "trade_status": trade.status,
            "total_amount": trade.total_amount,
            "receipt_amount": trade.total_amount,
            "subject": trade.subject,
            "gmt_create": now_beijing(),
            "gmt_payment": now_beijing(),
            "seller_id": "2088102177846880",
        }
        forged = changes.pop("sign", None)
        params.update(changes)
        params = {k: v for k, v in params.items() if v is not None}
        signed = rsa2_sign(self._alipay_key, content(params, without=("sign", "sign_type")))
        params["sign"] = signed if forged is None else forged
        params["sign_type"] = "RSA2"
        return params

    def refund_notification(self, trade: Trade, out_request_no: str) -> dict:
        total = sum(Decimal(amount) for amount in trade.refunds.values())
        return self.notification(
            trade,
            out_biz_no=out_request_no,
            refund_fee=str(total),
            gmt_refund=now_beijing() + ".000",
            trade_status="TRADE_CLOSED" if total == Decimal(trade.total_amount) else "TRADE_SUCCESS",
        )

    def notify(self, trade: Trade, **changes) -> tuple[int, str]:
        return self.post(trade.notify_url, self.notification(trade, **changes))

    def post(self, url: str, params: dict) -> tuple[int, str]:
        request = urllib.request.Request(
            url,
            data=urlencode(params).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
            method="POST",
        )
        status, body = http_exchange(request, timeout=30)
        answer = (status, body.decode())
        self.notify_answers.append(answer)
        return answer

    # --- the gateway

    def handle(self, handler):
        params = query_and_form(handler)
        method = params.get("method", "")
        if not self._signed_by_app(params):
            self.refused.append(method)
            return self._json(
                handler,
                method,
                {
                    "code": "40002",
                    "msg": "Invalid Arguments",
                    "sub_code": "isv.invalid-signature",
                    "sub_msg": "验签出错",
                },
                signed=False,
            )
        if params.get("app_id") != self.app_id:
            return self._json(
                handler,
                method,
                {
                    "code": "40002",
                    "msg": "Invalid Arguments",
                    "sub_code": "isv.invalid-app-id",
                    "sub_msg": "无效的AppID参数",
                },
                signed=False,
            )
        self.requests.append(params)
        biz = json.loads(params.get("biz_content") or "{}")
        with self._lock:
            if method in ("alipay.trade.page.pay", "alipay.trade.wap.pay"):
                trade = self._open(method, params, biz)
                body = f"<html><body>收银台 {trade.out_trade_no} ¥{trade.total_amount}</body></html>"
                return self._send(handler, 200, body, "text/html; charset=utf-8")
            if method == "alipay.trade.precreate":
                trade = self._open(method, params, biz)
                return self._json(
                    handler,
                    method,
                    {
                        "code": "10000",
                        "msg": "Success",
                        "out_trade_no": trade.out_trade_no,
                        "qr_code": f"https://qr.alipay.com/fake{trade.trade_no}",
                    },
                )
            trade = self.trades.get(biz.get("out_trade_no")) or next(
                (t for t in self.trades.values() if t.trade_no == biz.get("trade_no")), None
            )
            if trade is None:
                return self._json(
                    handler,
                    method,
                    {
                        "code": "40004",
                        "msg": "Business Failed",
                        "sub_code": "ACQ.TRADE_NOT_EXIST",
                        "sub_msg": "交易不存在",
                    },
                )
            if method == "alipay.trade.query":
                return self._json(
                    handler,
                    method,
                    {
                        "code": "10000",
                        "msg": "Success",
                        "trade_no": trade.trade_no,
                        "out_trade_no": trade.out_trade_no,
                        "trade_status": trade.status,
                        "total_amount": trade.total_amount,
                    },
                )
            if method == "alipay.trade.close":
                if trade.status != "WAIT_BUYER_PAY":
                    return self._json(
                        handler,
                        method,
                        {
                            "code": "40004",
                            "msg": "Business Failed",
                            "sub_code": "ACQ.TRADE_STATUS_ERROR",
                            "sub_msg": "交易状态不合法",
                        },
                    )
                trade.status = "TRADE_CLOSED"
                return self._json(
                    handler,
                    method,
                    {"code": "10000", "msg": "Success", "trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no},
                )
            if method == "alipay.trade.refund":
                return self._refund(handler, method, trade, biz)
        return self._json(
            handler, method, {"code": "40004", "msg": "Business Failed", "sub_code": "isv.invalid-method"}, signed=False
        )

    def _refund(self, handler, method, trade: Trade, biz: dict):
        request_no = biz.get("out_request_no") or trade.trade_no
        fund_change = "N"
        if request_no not in trade.refunds:
            if trade.status not in ("TRADE_SUCCESS", "TRADE_FINISHED"):
                return self._json(
                    handler, method, {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_STATUS_ERROR"}
                )
            trade.refunds[request_no] = biz["refund_amount"]
            fund_change = "Y"
            if sum(Decimal(a) for a in trade.refunds.values()) == Decimal(trade.total_amount):
                trade.status = "TRADE_CLOSED"
        total = sum(Decimal(a) for a in trade.refunds.values())
        return self._json(
            handler,
            method,
            {
                "code": "10000",
                "msg": "Success",
                "trade_no": trade.trade_no,
                "out_trade_no": trade.out_trade_no,
                "fund_change": fund_change,
                "refund_fee": str(total),
            },
        )

    def _open(self, method: str, params: dict, biz: dict) -> Trade:
        out_trade_no = biz["out_trade_no"]
        trade = self.trades.get(out_trade_no)
        if trade is None:
            self._next += 1
            trade = Trade(
                out_trade_no=out_trade_no,
                trade_no=f"2026{self._next:024d}",
                total_amount=biz["total_amount"],
                subject=biz["subject"],
                method=method,
                notify_url=params.get("notify_url", ""),
                return_url=params.get("return_url", ""),
                time_expire=biz.get("time_expire", ""),
            )
            self.trades[out_trade_no] = trade
        return trade

    def _signed_by_app(self, params: dict) -> bool:
        if params.get("sign_type") != "RSA2" or not params.get("sign"):
            return False
        return rsa2_valid(self._app_public, content(params, without=("sign",)), params["sign"])

    def _json(self, handler, method: str, answer: dict, *, signed: bool = True):
        name = "error_response" if not signed else method.replace(".", "_") + "_response"
        inner = json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
        body = f'{{"{name}":{inner}'
        if signed:
            body += f',"sign":"{rsa2_sign(self._alipay_key, inner)}"'
        body += "}"
        self._send(handler, 200, body, "application/json; charset=utf-8")

    def _send(self, handler, status: int, body: str, content_type: str):
        reply(handler, status, body.encode(), {"Content-Type": content_type})
