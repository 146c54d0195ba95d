"""The keyword baseline: the simple rule the trained model must clearly beat.

Written from the category definitions alone, before any training or evaluation text
existed, and never tuned on either. A message's category is the one whose keywords it
contains most (ties: the earlier category in ``_CATEGORY_WORDS``); no keyword: ``other``.
Urgency: an emergency keyword makes it ``emergency``, an urgent one ``urgent``.
"""

from collections.abc import Sequence

from hub.residents.triage import Triage

_CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "safety": ("火", "烟", "煤气", "燃气", "消防", "小偷", "被盗", "偷", "可疑", "打架", "报警", "安全", "隐患",
               "电动车", "充电"),
    "repair": ("坏", "修", "漏水", "渗水", "停电", "路灯", "灯不亮", "电梯", "门禁", "水管", "堵", "破损",
               "维修", "故障"),
    "sanitation": ("垃圾", "卫生", "清理", "打扫", "臭", "脏", "分类", "蚊子", "老鼠", "蟑螂", "污水"),
    "traffic": ("停车", "车位", "占道", "堵车", "车辆", "消防通道", "挡住", "乱停", "交通"),
    "neighbour": ("邻居", "噪音", "吵", "扰民", "纠纷", "楼上", "楼下", "装修声", "狗叫"),
    "care": ("老人", "孩子", "儿童", "独居", "照顾", "看护", "养老", "托管", "送餐"),
    "services": ("办理", "证明", "社保", "医保", "户口", "居住证", "咨询", "手续", "补贴", "申请"),
}
_EMERGENCY_WORDS = ("着火", "起火", "火灾", "冒烟", "煤气味", "燃气泄漏", "晕倒", "倒地", "昏迷", "叫不醒",
                    "被困", "困在", "救命", "流血", "打人", "触电")
_URGENT_WORDS = ("马上", "尽快", "赶紧", "今天", "急", "严重", "一直", "停水", "停电")


class KeywordTriage:
    name = "keywords"

    def triage(self, texts: Sequence[str]) -> list[Triage]:
        return [self._one(text) for text in texts]

    @staticmethod
    def _one(text: str) -> Triage:
        hits = {c: [w for w in words if w in text] for c, words in _CATEGORY_WORDS.items()}
        category = max(hits, key=lambda c: len(hits[c]))
        if not hits[category]:
            category = "other"
        emergency = [w for w in _EMERGENCY_WORDS if w in text]
        urgent = [w for w in _URGENT_WORDS if w in text]
        urgency = "emergency" if emergency else "urgent" if urgent else "normal"
        reason = tuple(emergency or urgent) + tuple(hits.get(category, ()))
        return Triage(category, urgency, 1.0 if reason else 0.0, reason)
