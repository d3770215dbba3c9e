namespace Notice.Vlm.Qwen25Vl;

/// <summary>
/// Qwen2.5-VL's chat template (chat_template.json) for one user turn holding one image then the
/// question, with add_generation_prompt: the default system turn, the user turn, and the
/// assistant header. There is nothing between &lt;|vision_end|&gt; and the question.
/// </summary>
public static class QwenPrompt
{
    public const string SystemTurn = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n";
    public const string ImagePlaceholder = "<|vision_start|><|image_pad|><|vision_end|>";

    /// <summary>The templated prompt for <paramref name="question"/> about one image.</summary>
    public static string Format(string question) =>
        SystemTurn + "<|im_start|>user\n" + ImagePlaceholder + question + "<|im_end|>\n<|im_start|>assistant\n";
}
