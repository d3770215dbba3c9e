namespace Notice.Vlm.Text;

/// <summary>The llava-1.5 conversation template NOTICE puts every question in.</summary>
public static class LlavaPrompt
{
    /// <summary>The placeholder token that LLaVA replaces by the image features.</summary>
    public const string ImageToken = "<image>";

    public static string Format(string question) => $"USER: {ImageToken}\n{question} ASSISTANT:";
}
