// SODEC nodes in ComfyUI's front end: after a run, each node shows the text it returned in its UI output
// ({"ui": {"text": [...]}}: sizes and bits per pixel, the decoder that ran and why, the model), which the
// stock front end otherwise keeps to itself. The text sits in a read-only box under the node's widgets; it is
// neither saved in the workflow nor sent with the prompt.
import { app } from "../../scripts/app.js";

const CATEGORY = "SODEC"; // schema.CATEGORY: the node pack's nodes, whichever API registered them
const WIDGET = "sodec_report";
const LINE_PX = 16; // the text box's line height, for sizing the node to its text
const CHAR_PX = 7; // about one character's width, for counting wrapped lines
const MAX_LINES = 12; // past this the box scrolls

function wrappedLines(lines, widthPx) {
    const perLine = Math.max(Math.floor(widthPx / CHAR_PX), 20);
    return lines.reduce((n, line) => n + Math.max(Math.ceil(line.length / perLine), 1), 0);
}

function reportWidget(node) {
    const found = node.widgets?.find((w) => w.name === WIDGET);
    if (found) return found;
    const box = document.createElement("textarea");
    box.className = "comfy-multiline-input sodec-report";
    box.readOnly = true;
    box.spellcheck = false;
    box.style.lineHeight = `${LINE_PX}px`;
    box.style.whiteSpace = "pre-wrap";
    box.style.opacity = "0.9";
    const widget = node.addDOMWidget(WIDGET, "sodec_report", box, {
        getValue: () => box.value,
        setValue: (v) => { box.value = v; },
        getMinHeight: () => {
            const lines = box.value ? box.value.split("\n") : [];
            return Math.min(wrappedLines(lines, node.size[0] - 30), MAX_LINES) * LINE_PX + 12;
        },
        serialize: false, // not part of the prompt
    });
    widget.serialize = false; // nor of the saved workflow's widgets_values
    return widget;
}

function showReport(node, lines) {
    const widget = reportWidget(node);
    widget.value = lines.join("\n");
    const wanted = node.computeSize();
    node.setSize([Math.max(node.size[0], wanted[0]), Math.max(node.size[1], wanted[1])]);
    node.setDirtyCanvas(true, true);
}

app.registerExtension({
    name: "sodec.NodeReport",
    async beforeRegisterNodeDef(nodeType, nodeData) {
        if (nodeData?.category !== CATEGORY) return;
        const onExecuted = nodeType.prototype.onExecuted;
        nodeType.prototype.onExecuted = function (output) {
            onExecuted?.apply(this, arguments);
            const text = output?.text;
            if (Array.isArray(text) && text.length) showReport(this, text.map(String));
        };
    },
});
